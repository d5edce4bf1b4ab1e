package dsn

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayd/internal/reply"
)

func baseNotice(line string) (Notice, Params) {
	at := time.Date(2025, 11, 24, 8, 0, 0, 0, time.UTC)
	orig := "From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
	n := Notice{
		Kind: Failed, ID: "Q1", From: "a@example.com", Arrival: at,
		Rcpts:       []Recipient{{Addr: "b@example.org", Reply: reply.Parse(line)}},
		RemoteMTA:   "smtp.isp.example[192.0.2.1]:587",
		LastAttempt: at.Add(time.Second),
		Size:        int64(len(orig)),
		Open:        func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(orig)), nil },
	}
	p := Params{Hostname: "relay.example.com", Now: at.Add(2 * time.Second),
		MessageID: "<n1@relay.example.com>", Boundary: "b-1", To: "a@example.com"}
	return n, p
}

func compose(t *testing.T, n Notice, p Params) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Compose(n, p, &b); err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, b.Bytes())
	return b.Bytes()
}

// writeTemp stores msg for the Python parser.
func writeTemp(t *testing.T, msg []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notice.eml")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// topHeaders returns the names of the message's top-level header fields.
func topHeaders(msg []byte) []string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var names []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		names = append(names, name)
	}
	return names
}

func TestHeaderInjection(t *testing.T) {
	evil := "550 5.1.1 no\r\nBcc: victim@example.net\r\n\r\nX-Injected: yes\nAction: relayed\rStatus: 2.0.0"
	n, p := baseNotice(evil)
	n.EnvID = "env\r\nX-Injected: env"
	n.RemoteMTA = "mx\r\nX-Injected: mta[192.0.2.1]:25"
	n.Rcpts[0].Addr = "b@example.org\r\nX-Injected: rcpt"
	n.Rcpts[0].ORcpt = "rfc822;b@example.org\nX-Injected: orcpt"
	p.To = "a@example.com\r\nBcc: victim@example.net"
	p.MessageID = "<n1@relay.example.com>\r\nX-Injected: id"
	var b bytes.Buffer
	err := Compose(n, p, &b)
	if !errors.Is(err, ErrParams) {
		t.Fatalf("a Message-ID with a line break: err = %v, want ErrParams", err)
	}
	p.MessageID = "<n1@relay.example.com>"
	msg := compose(t, n, p)

	for i, line := range strings.Split(string(msg), "\r\n") {
		for _, bad := range []string{"Bcc:", "X-Injected:", "Action: relayed", "Status: 2.0.0"} {
			if strings.HasPrefix(line, bad) {
				t.Errorf("line %d starts with injected %q: %q", i+1, bad, line)
			}
		}
	}
	want := []string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}
	if got := topHeaders(msg); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("top-level headers = %v, want %v", got, want)
	}

	pr := parseWithPython(t, writeTemp(t, msg))
	for _, h := range pr.Headers {
		if strings.EqualFold(h[0], "Bcc") || strings.EqualFold(h[0], "X-Injected") {
			t.Errorf("python sees injected header %v", h)
		}
	}
	if len(pr.Recipients) != 1 {
		t.Fatalf("python sees %d recipient blocks, want 1", len(pr.Recipients))
	}
	r := pr.Recipients[0]
	if _, ok := r["X-Injected"]; ok || r["Action"] != "failed" || r["Status"] != "5.1.1" {
		t.Errorf("recipient block tampered with: %v", r)
	}
	if !strings.Contains(r["Diagnostic-Code"], "Bcc: victim@example.net") {
		t.Errorf("the reply text should survive as data: %q", r["Diagnostic-Code"])
	}
	if _, ok := pr.PerMessage["X-Injected"]; ok {
		t.Errorf("per-message block tampered with: %v", pr.PerMessage)
	}
}

func TestLongReplyLineLength(t *testing.T) {
	words := strings.Repeat("lorem ipsum dolor sit amet ", 400) // ~10 KB
	blob := strings.Repeat("x", 3000)                           // one unbreakable run
	n, p := baseNotice("550 5.7.1 " + words + blob)
	n.Rcpts[0].Addr = strings.Repeat("long", 300) + "@example.org"
	msg := compose(t, n, p) // checkWellFormed asserts <= 998
	pr := parseWithPython(t, writeTemp(t, msg))
	if pr.LongestLine > 998 {
		t.Errorf("python measured a %d-octet line", pr.LongestLine)
	}
	if len(pr.Recipients) != 1 {
		t.Fatalf("recipients: %v", pr.Recipients)
	}
	diag := pr.Recipients[0]["Diagnostic-Code"]
	if !strings.HasPrefix(diag, "smtp; 550 5.7.1 lorem ipsum dolor sit amet lorem") || !strings.Contains(diag, strings.Repeat("x", 900)) {
		t.Errorf("Diagnostic-Code lost the reply: %.120q...", diag)
	}
	if got := strings.Count(diag, "x"); got != 3000 {
		t.Errorf("Diagnostic-Code keeps %d of 3000 x", got)
	}
	if pr.Recipients[0]["Status"] != "5.7.1" {
		t.Errorf("Status = %q", pr.Recipients[0]["Status"])
	}
}

func TestOriginalUnavailable(t *testing.T) {
	for name, open := range map[string]func() (io.ReadCloser, error){
		"nil":        nil,
		"open error": func() (io.ReadCloser, error) { return nil, errors.New("gone") },
		"read error": func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n"), errReader{})), nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			n, p := baseNotice("550 5.1.1 no")
			n.Open = open
			msg := compose(t, n, p)
			if bytes.Contains(msg, []byte("rfc822-headers")) || bytes.Contains(msg, []byte("message/rfc822")) {
				t.Error("a third part was written for an unreadable original")
			}
			if !bytes.Contains(msg, []byte("could not be read")) {
				t.Error("part 1 does not say the original is missing")
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestFullOriginalRules(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789\r\n", 200)
	open := func(s string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
	}
	cases := []struct {
		name    string
		kind    Kind
		ret     string
		size    int64
		maxFull int64
		want    string
	}{
		{"full fits", Failed, "FULL", int64(len(big)), 0, "message/rfc822"},
		{"full lower case", Failed, "full", int64(len(big)), 0, "message/rfc822"},
		{"size over max", Failed, "FULL", int64(len(big)), 100, "text/rfc822-headers"},
		{"size understated", Failed, "FULL", 10, 100, "text/rfc822-headers"},
		{"never full", Failed, "FULL", int64(len(big)), -1, "text/rfc822-headers"},
		{"hdrs", Failed, "HDRS", int64(len(big)), 0, "text/rfc822-headers"},
		{"unset", Failed, "", int64(len(big)), 0, "text/rfc822-headers"},
		{"delay notice", Delayed, "FULL", int64(len(big)), 0, "text/rfc822-headers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, p := baseNotice("550 5.1.1 no")
			n.Kind, n.Ret, n.Size, n.Open = c.kind, c.ret, c.size, open(big)
			p.MaxFull = c.maxFull
			msg := compose(t, n, p)
			if !bytes.Contains(msg, []byte("Content-Type: "+c.want+"\r\n")) {
				t.Fatalf("no %s part", c.want)
			}
			body := bytes.Contains(msg, []byte("0123456789"))
			if body != (c.want == "message/rfc822") {
				t.Errorf("body included = %v", body)
			}
		})
	}
}

func TestHeaderBlockCapAndLineEndings(t *testing.T) {
	// 300 KiB of headers and no blank line: cut at the last whole line
	// below 256 KiB.
	var h strings.Builder
	for i := 0; h.Len() < 300<<10; i++ {
		h.WriteString("X-Filler: " + strings.Repeat("f", 60) + "\n")
	}
	n, p := baseNotice("550 5.1.1 no")
	hs := h.String()
	n.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(hs)), nil }
	msg := compose(t, n, p)
	_, part, _ := bytes.Cut(msg, []byte("text/rfc822-headers\r\n\r\n"))
	part, _, _ = bytes.Cut(part, []byte("\r\n--b-1--"))
	if len(part) > 256<<10+(256<<10)/70+2 || len(part) < 200<<10 {
		t.Errorf("header part is %d bytes", len(part))
	}
	for _, line := range bytes.Split(part, []byte("\r\n")) {
		if len(line) > 0 && !bytes.Equal(line, []byte("X-Filler: "+strings.Repeat("f", 60))) {
			t.Fatalf("partial or mangled line %q", line)
		}
	}

	// LF-only original: the header part gets CRLF and stops at the blank line.
	n.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("Subject: lf\nX-A: 1\n\nbody line\n")), nil
	}
	msg = compose(t, n, p)
	if !bytes.Contains(msg, []byte("\r\n\r\nSubject: lf\r\nX-A: 1\r\n\r\n--b-1--\r\n")) {
		t.Errorf("LF original not normalised:\n%s", msg)
	}
	if bytes.Contains(msg, []byte("body line")) {
		t.Error("body leaked into the header part")
	}
}

func TestBoundaryCollision(t *testing.T) {
	n, p := baseNotice("550 5.1.1 no")
	n.Ret = "FULL"
	orig := "Subject: x\r\n\r\n--b-1\r\n--b-1=1\r\nfake part\r\n--b-1--\r\n"
	n.Size = int64(len(orig))
	n.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(orig)), nil }
	msg := compose(t, n, p)
	if !bytes.Contains(msg, []byte(`boundary="b-1=2"`)) {
		t.Fatalf("boundary not changed:\n%s", msg)
	}
	pr := parseWithPython(t, writeTemp(t, msg))
	if strings.Join(pr.Parts, ",") != "text/plain,message/delivery-status,message/rfc822" {
		t.Errorf("parts = %v", pr.Parts)
	}
	if !strings.Contains(pr.OriginalBody, "fake part") {
		t.Errorf("original body = %q", pr.OriginalBody)
	}
}

func TestComposeRejects(t *testing.T) {
	mods := map[string]func(*Notice, *Params){
		"no hostname":   func(n *Notice, p *Params) { p.Hostname = "" },
		"bad hostname":  func(n *Notice, p *Params) { p.Hostname = "a b" },
		"no to":         func(n *Notice, p *Params) { p.To = "\r\n" },
		"no message id": func(n *Notice, p *Params) { p.MessageID = "" },
		"zero now":      func(n *Notice, p *Params) { p.Now = time.Time{} },
		"no rcpts":      func(n *Notice, p *Params) { n.Rcpts = nil },
		"bad kind":      func(n *Notice, p *Params) { n.Kind = "expanded" },
		"bad boundary":  func(n *Notice, p *Params) { p.Boundary = "a\"b" },
		"long boundary": func(n *Notice, p *Params) { p.Boundary = strings.Repeat("b", 71) },
	}
	for name, mod := range mods {
		t.Run(name, func(t *testing.T) {
			n, p := baseNotice("550 5.1.1 no")
			mod(&n, &p)
			var b bytes.Buffer
			if err := Compose(n, p, &b); !errors.Is(err, ErrParams) {
				t.Fatalf("err = %v, want ErrParams", err)
			}
			if b.Len() != 0 {
				t.Error("partial output written")
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("spool full") }

func TestComposeWriteError(t *testing.T) {
	n, p := baseNotice("550 5.1.1 no")
	if err := Compose(n, p, failWriter{}); err == nil || !strings.Contains(err.Error(), "spool full") {
		t.Fatalf("err = %v", err)
	}
}

func TestDefaultBoundaryAndBareMessageID(t *testing.T) {
	n, p := baseNotice("550 5.1.1 no")
	p.Boundary = ""
	p.MessageID = "n1@relay.example.com"
	msg := compose(t, n, p)
	if !bytes.Contains(msg, []byte(`boundary="`+defaultBoundary+`"`)) {
		t.Error("default boundary not used")
	}
	if !bytes.Contains(msg, []byte("Message-ID: <n1@relay.example.com>\r\n")) {
		t.Error("Message-ID not bracketed")
	}
}
