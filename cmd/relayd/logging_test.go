package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"relayd/maillog"
)

// TestComponentTrails: the component attribute ends the line, so a mail
// log line still starts "msg=mail id=... from=..." (README).
func TestComponentTrails(t *testing.T) {
	var b bytes.Buffer
	root := slog.New(withTrailingAttrs(slog.NewTextHandler(&b, nil)))
	log := component(root, compQueue)
	maillog.Log(log, maillog.Event{ID: "01ABC", From: "a@example.com", To: "b@example.org",
		Relay: "smtp.isp.example[192.0.2.1]:587", Status: maillog.Sent, Delay: time.Second, DSN: "2.0.0"})
	log.WithGroup("g").Info("grouped", "k", "v")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := "msg=mail id=01ABC from=<a@example.com> to=b@example.org relay=smtp.isp.example[192.0.2.1]:587 status=sent delay=1s dsn=2.0.0 component=queue"
	if len(lines) != 2 || !strings.HasSuffix(lines[0], want) {
		t.Errorf("mail line = %q, want suffix %q", lines[0], want)
	}
	if !strings.HasSuffix(lines[len(lines)-1], "msg=grouped component=queue g.k=v") {
		t.Errorf("grouped line = %q", lines[len(lines)-1])
	}
}
