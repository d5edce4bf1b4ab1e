package smtpd

import (
	"github.com/emersion/go-smtp"
	"net/netip"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	l := newIPLimiter(func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := 0; i < 3; i++ {
		if !l.allow(a, 3) {
			t.Fatalf("message %d of the burst refused", i+1)
		}
	}
	if l.allow(a, 3) {
		t.Fatal("4th message within the minute allowed")
	}
	if !l.allow(b, 3) {
		t.Fatal("another IP is limited by the first one's use")
	}
	now = now.Add(20 * time.Second) // one token back at 3/min
	if !l.allow(a, 3) || l.allow(a, 3) {
		t.Fatal("refill is not one message per 20s")
	}
	if !l.allow(a, 0) {
		t.Fatal("0 must mean no cap")
	}
}

// The per-IP message cap answers 450 4.7.1 at MAIL once the burst is used
// up, and the session stays usable.
func TestMessageRatePerIP(t *testing.T) {
	e := serve(t, Relay, func(c *Config) { c.Settings.MaxMessagesPerMinutePerIP = 2 })
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Hello("app.test")
	for i := 0; i < 2; i++ {
		if err := c.Mail("a@example.com", nil); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		c.Reset()
	}
	err = c.Mail("a@example.com", nil)
	if code(err) != 450 {
		t.Fatalf("3rd MAIL within the minute: %v, want 450 4.7.1", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("session unusable after the refusal: %v", err)
	}
}
