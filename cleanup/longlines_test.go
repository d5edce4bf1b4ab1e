package cleanup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/queue"
)

func longest(s string) int {
	most := 0
	for _, l := range strings.Split(s, "\r\n") {
		most = max(most, len(l))
	}
	return most
}

// A body line over 998 octets is re-encoded before signing: the committed
// message has no long line, carries the new encoding, and the signer saw
// exactly that form (issue 16). The first draft is gone.
func TestLongLineReencoded(t *testing.T) {
	q := newQueue(t)
	fs := &fakeSigner{}
	c := newCleanup(t, q, func(c *Config) { c.Signer = fs })
	msg := "From: app@example.com\nTo: bob@example.org\nSubject: json\nContent-Type: application/json\n\n" +
		strings.Repeat(`{"k":"v"},`, 500) + "\nend\n"
	id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	if l := longest(got); l > 998 {
		t.Errorf("a %d-octet line was queued", l)
	}
	if !strings.Contains(got, "Content-Type: application/json\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") {
		t.Errorf("not re-encoded:\n%.600s", got)
	}
	if !strings.Contains(got, "id "+id+"\r\n") || !strings.Contains(got, "Message-ID: <"+id+".") {
		t.Errorf("prefix not for the new queue ID %s:\n%.400s", id, got)
	}
	if signed := fs.buf.String(); !strings.HasSuffix(got, signed[strings.LastIndex(signed, "Received:"):]) {
		t.Errorf("the signer did not see the re-encoded message")
	}
	n := 0
	q.List(func(*queue.Meta) error { n++; return nil })
	if n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// A long line in a part that is already quoted-printable cannot be fixed:
// 550 5.6.0 naming the real limit. Lines of exactly 998 pass unchanged.
func TestLongLineRefusedOrUntouched(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	bad := "Subject: s\nContent-Transfer-Encoding: quoted-printable\n\n" + strings.Repeat("x", 1500) + "\n"
	_, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(bad))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 6, 0}) || !strings.Contains(se.Message, "998") {
		t.Errorf("got %v, want 550 5.6.0 naming 998", err)
	}
	ok := "Subject: s\n\n" + strings.Repeat("y", 998) + "\n"
	id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(ok))
	if err != nil {
		t.Fatal(err)
	}
	if got := wire(t, q, id); !strings.HasSuffix(got, "Subject: s\r\n\r\n"+strings.Repeat("y", 998)+"\r\n") {
		t.Errorf("a 998-octet line was changed")
	}
}

// With a smarthost known not to take 8BITMIME, an 8-bit body is downgraded
// to quoted-printable at intake, before signing; the envelope then says
// 7BIT. Otherwise it stays as it is.
func TestSevenBitSmarthostDowngrade(t *testing.T) {
	q := newQueue(t)
	seven := true
	c := newCleanup(t, q, func(c *Config) { c.SevenBitOnly = func(string, string, []string) bool { return seven } })
	msg := "From: app@example.com\nSubject: s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGr\xc3\xbc\xc3\x9fe\n"
	id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	if !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable\r\n") || !strings.HasSuffix(got, "\r\n\r\nGr=C3=BC=C3=9Fe\r\n") {
		t.Errorf("not downgraded:\n%s", got)
	}
	if m, _ := q.Get(id); m.Body != "7BIT" {
		t.Errorf("Body = %q, want 7BIT", m.Body)
	}
	seven = false
	id, err = c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := wire(t, q, id); !strings.HasSuffix(got, "8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n") {
		t.Errorf("changed for an 8BITMIME smarthost:\n%s", got)
	}
}

// The one status=queued line of a re-encoded message says what was fixed
// (fixed=long-lines, fixed=8bitmime for the downgrade, comma-joined);
// a message left as it came has no fixed= (issue 16).
func TestQueuedLogSaysFixed(t *testing.T) {
	var logBuf strings.Builder
	var mu sync.Mutex
	q, err := queue.Open(queue.Config{Dir: t.TempDir(), MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour,
		Concurrency: 1, Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logBuf}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	sevenBit := false
	c := newCleanup(t, q, func(c *Config) { c.SevenBitOnly = func(string, string, []string) bool { return sevenBit } })
	long := strings.Repeat("x", 2100)
	cases := []struct {
		name, msg string
		seven     bool
		want      string
	}{
		{"plain", "Subject: a\n\nshort\n", false, ""},
		{"long", "Subject: b\n\n" + long + "\n", false, "long-lines"},
		{"8bit", "Subject: c\nContent-Type: text/plain; charset=utf-8\n\nGr\xc3\xbc\xc3\x9fe\n", true, "8bitmime"},
		{"both", "Subject: d\nContent-Type: text/plain; charset=utf-8\n\nGr\xc3\xbc\xc3\x9fe " + long + "\n", true, "long-lines,8bitmime"},
	}
	for _, tc := range cases {
		sevenBit = tc.seven
		id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(tc.msg))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mu.Lock()
		logs := logBuf.String()
		mu.Unlock()
		var line string
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "id="+id+" ") && strings.Contains(l, "status=queued") {
				if line != "" {
					t.Errorf("%s: two status=queued lines for %s", tc.name, id)
				}
				line = l
			}
		}
		if line == "" {
			t.Fatalf("%s: no status=queued line for %s in:\n%s", tc.name, id, logs)
		}
		switch {
		case tc.want == "" && strings.Contains(line, "fixed="):
			t.Errorf("%s: %q says fixed for a message left as it came", tc.name, line)
		case tc.want != "" && !strings.Contains(line, " fixed="+tc.want) && !strings.HasSuffix(line, "fixed="+tc.want):
			t.Errorf("%s: %q, want fixed=%s", tc.name, line, tc.want)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
