package maillog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneGreppableLine(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, nil))
	Log(l, Event{ID: "01ABC", From: "app@example.com", To: "bob@example.org", Relay: "smtp.isp.example[192.0.2.1]:587",
		Status: Sent, Delay: 1234 * time.Millisecond, DSN: "2.0.0"})
	Log(l, Event{ID: "01DEF", Status: Queued, To: "x@example.org", Size: 42})
	Log(l, Event{ID: "01GHI", From: "a@example.com", To: "c@example.org", Status: Deferred, DSN: "4.3.0", Reply: "451 4.3.0 later"})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want one per event:\n%s", len(lines), b.String())
	}
	for i, want := range []string{
		"msg=mail id=01ABC from=<app@example.com> to=bob@example.org relay=smtp.isp.example[192.0.2.1]:587 status=sent delay=1.234s dsn=2.0.0",
		"msg=mail id=01DEF from=<> to=x@example.org status=queued size=42",
		`level=WARN msg=mail id=01GHI from=<a@example.com> to=c@example.org status=deferred dsn=4.3.0 reply="451 4.3.0 later"`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d:\n%s\nwant it to contain\n%s", i, lines[i], want)
		}
	}
}
