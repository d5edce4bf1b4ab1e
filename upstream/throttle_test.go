package upstream

import (
	"context"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestThrottledReplies(t *testing.T) {
	for _, tc := range []struct {
		code int
		ec   smtp.EnhancedCode
		msg  string
		want bool
	}{
		{451, smtp.EnhancedCode{4, 7, 1}, "rate limited, try again later", true},
		{450, smtp.EnhancedCode{4, 7, 0}, "Too many messages, slow down", true},
		{452, smtp.EnhancedCode{4, 3, 1}, "Error: too much mail from 192.0.2.1", true}, // Postfix anvil
		{421, smtp.EnhancedCode{4, 7, 0}, "too many connections", true},
		{451, smtp.EnhancedCode{4, 7, 28}, "Our system has detected an unusual rate", true},
		{452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients", false},
		{452, smtp.EnhancedCode{4, 2, 2}, "mailbox full, message limit reached", false},
		{451, smtp.EnhancedCode{4, 3, 0}, "try again later", false},
		{550, smtp.EnhancedCode{5, 7, 1}, "rate limited", false},
	} {
		if got := throttled(&smtp.SMTPError{Code: tc.code, EnhancedCode: tc.ec, Message: tc.msg}); got != tc.want {
			t.Errorf("throttled(%d %v %q) = %v", tc.code, tc.ec, tc.msg, got)
		}
	}
}

// TestRateLimitDefersTransport: "451 4.7.1 rate limited" at MAIL, RCPT or
// the final dot is a session *Error (the queue backs off from the whole
// smarthost), not one message's deferral; "452 4.5.3 too many recipients"
// stays a recipient's outcome (issue 20 item 7). Before the fix each was a
// per-recipient 4xx and the queue went on with the next message.
func TestRateLimitDefersTransport(t *testing.T) {
	const limited = "451 4.7.1 rate limited, try again later"
	for _, at := range []string{"mail", "rcpt", "dot"} {
		t.Run(at, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, pipelining bool) {
				o := fakeOpts{pipelining: pipelining}
				switch at {
				case "mail":
					o.mail = func(int, string) string { return limited }
				case "rcpt":
					o.rcpt = func(int, string) string { return limited }
				case "dot":
					o.dot = func(int, fakeMsg) string { return limited }
				}
				f := newFakeMTA(t, o)
				c, _ := f.client(t, nil)
				out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
				e, ok := err.(*Error)
				if !ok || !e.Temporary || e.Code != 451 || len(out.Rcpts) != 0 {
					t.Fatalf("got %v %v, want a temporary session error", out.Rcpts, err)
				}
			})
		})
	}
	f := newFakeMTA(t, fakeOpts{pipelining: true, rcpt: func(n int, _ string) string {
		if n > 1 {
			return "452 4.5.3 Too many recipients"
		}
		return ""
	}})
	c, _ := f.client(t, nil)
	out, err := c.Deliver(context.Background(), delivery("m1", "a@example.net", "b@example.net"))
	if err != nil || out.Rcpts[0] != nil || out.Rcpts[1] == nil || out.Rcpts[1].Code != 452 {
		t.Fatalf("too many recipients: %v %v", out.Rcpts, err)
	}
}
