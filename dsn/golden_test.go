package dsn

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"relayd/internal/reply"
)

var update = flag.Bool("update", false, "rewrite the golden .eml files in testdata/")

// vector is one golden test case: testdata/NAME.json -> testdata/NAME.eml.
type vector struct {
	Notice    Notice      `json:"notice"`
	Params    Params      `json:"params"`
	Original  *string     `json:"original,omitempty"` // nil: no opener
	OpenError bool        `json:"open_error,omitempty"`
	Expect    expectation `json:"expect"`
}

// expectation is what the independent parser must see.
type expectation struct {
	Third           string              `json:"third"` // content type of part 3, "" for none
	Rcpts           []map[string]string `json:"rcpts"`
	PerMessage      map[string]string   `json:"per_message"`
	Text            []string            `json:"text"` // substrings of part 1
	OriginalSubject string              `json:"original_subject"`
	OriginalBody    string              `json:"original_body"`
}

func loadVector(t *testing.T, path string) vector {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// A vector's recipients are written as the queue stores them (addr,
	// last_reply): the reply becomes fields as the notifier makes them.
	var stored struct {
		Notice struct {
			Rcpts []struct {
				LastReply string `json:"last_reply"`
			}
		} `json:"notice"`
	}
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for i, r := range stored.Notice.Rcpts {
		if v.Notice.Rcpts[i].Reply.IsZero() {
			v.Notice.Rcpts[i].Reply = reply.Parse(r.LastReply)
		}
	}
	if v.Original != nil {
		orig := *v.Original
		if v.Notice.Size == 0 {
			v.Notice.Size = int64(len(orig))
		}
		v.Notice.Open = func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(orig)), nil
		}
	}
	if v.OpenError {
		v.Notice.Open = func() (io.ReadCloser, error) { return nil, errors.New("spool: no such file") }
	}
	return v
}

func TestGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.json")
	if err != nil || len(paths) < 6 {
		t.Fatalf("golden vectors missing: %v %v", paths, err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			v := loadVector(t, path)
			var out bytes.Buffer
			if err := Compose(v.Notice, v.Params, &out); err != nil {
				t.Fatal(err)
			}
			checkWellFormed(t, out.Bytes())
			golden := strings.TrimSuffix(path, ".json") + ".eml"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./dsn -run TestGolden -update)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("output differs from %s:\n%s", golden, firstDiff(out.Bytes(), want))
			}
			// Same inputs, same bytes.
			var again bytes.Buffer
			if err := Compose(v.Notice, v.Params, &again); err != nil || !bytes.Equal(again.Bytes(), out.Bytes()) {
				t.Errorf("second Compose differs (err %v)", err)
			}
			checkWithPython(t, golden, v.Expect)
		})
	}
}

// checkWellFormed asserts the invariants every notice has: CRLF only, no
// line over 998 octets (RFC 5322 §2.1.1).
func checkWellFormed(t *testing.T, msg []byte) {
	t.Helper()
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Error("message does not end with CRLF")
	}
	for i, line := range bytes.Split(msg, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("line %d is %d octets long", i+1, len(line))
		}
	}
}

func firstDiff(got, want []byte) string {
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + itoa(i+1) + ":\n got: " + strings.TrimRight(gl, "\r") + "\nwant: " + strings.TrimRight(wl, "\r")
		}
	}
	return "(lengths differ)"
}

func itoa(i int) string { return strconv.Itoa(i) }

// parsed is what testdata/parse_dsn.py reports.
type parsed struct {
	Headers         [][2]string         `json:"headers"`
	ContentType     string              `json:"content_type"`
	ReportType      string              `json:"report_type"`
	Parts           []string            `json:"parts"`
	Defects         []string            `json:"defects"`
	LongestLine     int                 `json:"longest_line"`
	BareLF          int                 `json:"bare_lf"`
	Text            string              `json:"text"`
	PerMessage      map[string]string   `json:"per_message"`
	Recipients      []map[string]string `json:"recipients"`
	OriginalSubject string              `json:"original_subject"`
	OriginalBody    string              `json:"original_body"`
	OriginalHeaders string              `json:"original_headers"`
}

// parseWithPython runs the independent parser (Python's email package) on
// the message in file. It skips when /usr/bin/python3 is missing, unless
// CI=true.
func parseWithPython(t *testing.T, file string) parsed {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", py, err)
		}
		t.Skipf("%s not installed: %v", py, err)
	}
	cmd := exec.Command(py, "testdata/parse_dsn.py", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("parse_dsn.py %s: %v\n%s", file, err, stderr.String())
	}
	var p parsed
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("parse_dsn.py output: %v\n%s", err, out)
	}
	return p
}

func checkWithPython(t *testing.T, file string, want expectation) {
	t.Helper()
	p := parseWithPython(t, file)
	if p.ContentType != "multipart/report" || p.ReportType != "delivery-status" {
		t.Errorf("python sees %s report-type=%s", p.ContentType, p.ReportType)
	}
	if len(p.Defects) > 0 {
		t.Errorf("python reports defects: %v", p.Defects)
	}
	if p.LongestLine > 998 || p.BareLF != 0 {
		t.Errorf("python sees longest line %d, %d bare LF", p.LongestLine, p.BareLF)
	}
	wantParts := []string{"text/plain", "message/delivery-status"}
	if want.Third != "" {
		wantParts = append(wantParts, want.Third)
	}
	if strings.Join(p.Parts, ",") != strings.Join(wantParts, ",") {
		t.Errorf("parts = %v, want %v", p.Parts, wantParts)
	}
	if got := p.PerMessage["Reporting-MTA"]; !strings.HasPrefix(got, "dns; ") {
		t.Errorf("Reporting-MTA = %q", got)
	}
	for k, v := range want.PerMessage {
		if p.PerMessage[k] != v {
			t.Errorf("per-message %s = %q, want %q", k, p.PerMessage[k], v)
		}
	}
	if len(p.Recipients) != len(want.Rcpts) {
		t.Fatalf("python sees %d recipient blocks, want %d: %v", len(p.Recipients), len(want.Rcpts), p.Recipients)
	}
	for i, w := range want.Rcpts {
		for k, v := range w {
			if got := p.Recipients[i][k]; got != v {
				t.Errorf("recipient %d %s = %q, want %q", i, k, got, v)
			}
		}
	}
	for _, s := range want.Text {
		if !strings.Contains(strings.Join(strings.Fields(p.Text), " "), s) {
			t.Errorf("text part lacks %q:\n%s", s, p.Text)
		}
	}
	if want.OriginalSubject != "" && p.OriginalSubject != want.OriginalSubject {
		t.Errorf("original Subject = %q, want %q", p.OriginalSubject, want.OriginalSubject)
	}
	if want.OriginalBody != "" && !strings.Contains(p.OriginalBody, want.OriginalBody) {
		t.Errorf("original body %q lacks %q", p.OriginalBody, want.OriginalBody)
	}
	if want.Third == "text/rfc822-headers" && !strings.Contains(p.OriginalHeaders, "Subject: Quarterly report") {
		t.Errorf("header part lacks the original Subject: %q", p.OriginalHeaders)
	}
	if want.Third == "text/rfc822-headers" && strings.Contains(p.OriginalHeaders, "Hello Bob") {
		t.Errorf("header part contains the body: %q", p.OriginalHeaders)
	}
}
