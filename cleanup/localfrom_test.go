package cleanup

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"relayd/envelope"
)

func TestLocalWithComment(t *testing.T) {
	for _, c := range []struct{ in, display, addr string }{
		{"root (Cron Daemon)", "Cron Daemon", "root"},
		{"root(mdadm monitoring)", "mdadm monitoring", "root"},
		{"root", "", "root"},
		{"root (a (nested) comment)", "", "root (a (nested) comment)"},
		{"two words (x)", "", "two words (x)"},
		{`"q (x)" (y)`, "", `"q (x)" (y)`},
		{"(only a comment)", "", "(only a comment)"},
	} {
		d, a := localWithComment(c.in)
		if d != c.display || a != c.addr {
			t.Errorf("localWithComment(%q) = %q, %q; want %q, %q", c.in, d, a, c.display, c.addr)
		}
	}
}

// TestLocalFromCommentKept is cron's From: the comment names the sender and
// survives the rewrite to rewrite.sender as the display name.
func TestLocalFromCommentKept(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	sub := smtpSub("admin@example.com")
	sub.RemoteIP, sub.LocalUID, sub.Origin = netip.Addr{}, 0, envelope.FromLocal
	sub.Envelope.From = "noreply@example.com"
	id, err := c.Submit(context.Background(), sub, strings.NewReader("From: root (Cron Daemon)\nSubject: job\n\nout\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := wire(t, q, id); !strings.Contains(got, "From: \"Cron Daemon\" <noreply@example.com>\r\n") {
		t.Errorf("From not rewritten with the comment as display name:\n%s", got)
	}
}

func TestParseAddressAtInLocalPart(t *testing.T) {
	for _, bad := range []string{"a@@example.com", "a@b@example.com", "@example.com", "root@"} {
		if got, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) = %q, want an error", bad, got)
		}
	}
	for _, good := range []string{`"a@b"@example.com`, "root", "a.b+c@example.com"} {
		if _, err := ParseAddress(good); err != nil {
			t.Errorf("ParseAddress(%q): %v", good, err)
		}
	}
}
