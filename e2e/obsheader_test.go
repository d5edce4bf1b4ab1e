package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// The obsolete "Subject : hi" (RFC 5322 §4.5.3) through the sendmail command
// and through SMTP: the header does not end there, so the message relays
// with its own From and To, signed for its From domain (issue 16). It
// leaves as "Subject: hi" (RFC 5322 §4.5: never generated; dkimpy refuses
// the obsolete form).
func TestObsoleteSubjectSyntax(t *testing.T) {
	e := newSMEnv(t, "", false)
	keys, records := dkimSetup(t, e.dir, testKey{"x.example", "obs", "ed25519"})
	b, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, append(b, "\n"+keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.r = start(t, e.dir, e.config)

	e.mustShim(t, "Subject : hi marker-obs-sendmail\nFrom: a@x.example\nTo: b@y.example\n\nbody\n", "-t", "-i")
	if err := e.r.send(t, "a@x.example", []string{"b@y.example"},
		"Subject : hi marker-obs-smtp\r\nFrom: a@x.example\r\nTo: b@y.example\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, marker := range []string{"marker-obs-sendmail", "marker-obs-smtp"} {
		m := smWait(t, e.sh, marker, 20*time.Second)
		if len(m.To) != 1 || m.To[0] != "b@y.example" {
			t.Errorf("%s: envelope to %v, want [b@y.example]", marker, m.To)
		}
		if from := smHeader(m.Data, "From"); len(from) != 1 || from[0] != "a@x.example" {
			t.Errorf("%s: From = %q, want the message's own a@x.example", marker, from)
		}
		if to := smHeader(m.Data, "To"); len(to) != 1 || to[0] != "b@y.example" {
			t.Errorf("%s: To = %q", marker, to)
		}
		body := m.Data[bytes.Index(m.Data, []byte("\r\n\r\n"))+4:]
		if string(body) != "body\r\n" || !strings.Contains(headerBlock(m.Data), "\r\nSubject: hi "+marker+"\r\n") {
			t.Errorf("%s: header fields became body:\n%s", marker, m.Data)
		}
		if ok, out := verifyDKIMPy(t, m.Data, records); !ok || !bytes.Contains(m.Data, []byte("d=x.example;")) {
			t.Errorf("%s: not DKIM-valid for x.example:\n%s\n%s", marker, out, m.Data)
		}
	}
}
