package cleanup

import (
	"context"
	"strings"
	"testing"
)

func TestHas8bit(t *testing.T) {
	for i := 0; i < 20; i++ {
		b := []byte(strings.Repeat("a", 19))
		if has8bit(b) {
			t.Fatal("ASCII reported 8-bit")
		}
		b[i%19] = 0xc3
		if !has8bit(b) {
			t.Errorf("octet at %d missed", i%19)
		}
	}
}

// The envelope's body type and SMTPUTF8 need come from the content, not
// from what the client declared.
func TestBodyTypeFromContent(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	for _, tc := range []struct {
		declared, msg, rcpt string
		body                string
		utf8                bool
	}{
		{"8BITMIME", "Subject: cron\n\nascii only\n", "bob@example.org", "7BIT", false},
		{"", "Subject: s\n\ncaf\xc3\xa9\n", "bob@example.org", "8BITMIME", false},
		{"", "Subject: caf\xc3\xa9\n\nbody\n", "bob@example.org", "8BITMIME", true},
		{"", "Subject: s\n\nbody\n", "j\xc3\xb6rg@example.org", "7BIT", true},
		{"BINARYMIME", "Subject: s\n\nbody\n", "bob@example.org", "BINARYMIME", false},
		{"", "Subject: latin1 caf\xe9\n\nbody\n", "bob@example.org", "8BITMIME", false},
	} {
		sub := smtpSub(tc.rcpt)
		sub.Envelope.Body, sub.Envelope.UTF8 = tc.declared, true
		id, err := c.Submit(context.Background(), sub, strings.NewReader(tc.msg))
		if err != nil {
			t.Fatal(err)
		}
		m, err := q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Body != tc.body || m.UTF8 != tc.utf8 {
			t.Errorf("%q to %s: Body %q UTF8 %v, want %q %v", tc.msg, tc.rcpt, m.Body, m.UTF8, tc.body, tc.utf8)
		}
	}
}
