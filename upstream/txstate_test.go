package upstream

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"relayd/envelope"
)

// Transaction state after a refusal (issue 20).

func deliveryFrom(id, from string, rcpts ...string) *envelope.Delivery {
	d := delivery(id, rcpts...)
	d.From = from
	return d
}

// bothPaths runs f with and without PIPELINING (the pipelined and the
// command-by-command transaction).
func bothPaths(t *testing.T, f func(t *testing.T, pipelining bool)) {
	for _, p := range []bool{false, true} {
		name := "stepwise"
		if p {
			name = "pipelined"
		}
		t.Run(name, func(t *testing.T) { f(t, p) })
	}
}

// TestRefusedAtDotThenNextMessage: a server that still holds the envelope
// after refusing a message at the final dot (Postfix, issue 20) must see
// RSET before the next MAIL; the next message arrives intact, nothing empty
// is queued, nothing innocent is refused. Before the fix the next MAIL got
// "503 nested MAIL" and was bounced, and on the pipelined path the lone dot
// queued an empty message from the previous sender.
func TestRefusedAtDotThenNextMessage(t *testing.T) {
	for _, refusal := range []string{"550 5.7.1 message content rejected", "451 4.2.2 quota exceeded"} {
		t.Run(refusal[:3], func(t *testing.T) {
			bothPaths(t, func(t *testing.T, pipelining bool) {
				f := newFakeMTA(t, fakeOpts{pipelining: pipelining, keepEnvelope: true,
					dot: func(n int, m fakeMsg) string {
						if n == 1 {
							return refusal
						}
						return ""
					}})
				c, _ := f.client(t, nil)
				out, err := c.Deliver(context.Background(), deliveryFrom("m1", "spam@example.com", "b@example.net"))
				if err != nil || out.Rcpts[0] == nil || strconv.Itoa(out.Rcpts[0].Code) != refusal[:3] {
					t.Fatalf("refused message: %v %v", out.Rcpts, err)
				}
				out, err = c.Deliver(context.Background(), deliveryFrom("m2", "good@example.com", "d@example.net"))
				if err != nil || out.Rcpts[0] != nil {
					t.Fatalf("innocent message: %v %v\nwire: %s", out.Rcpts, err, f.verbs())
				}
				q := f.Queued()
				if len(q) != 1 || q[0].From != "good@example.com" || strings.Join(q[0].Rcpts, ",") != "d@example.net" || q[0].Data != testBody {
					t.Fatalf("queued %d messages: %+v", len(q), summary(q))
				}
				if !strings.Contains(f.verbs(), "RSET MAIL") {
					t.Errorf("no RSET before the next MAIL: %s", f.verbs())
				}
				if f.Conns() != 1 {
					t.Errorf("Conns = %d", f.Conns())
				}
			})
		})
	}
}

func summary(q []fakeMsg) []string {
	var s []string
	for _, m := range q {
		s = append(s, m.From+"->"+strings.Join(m.Rcpts, ",")+" "+strconv.Itoa(len(m.Data))+" bytes")
	}
	return s
}

// TestNoSecondEHLO: after a transaction left open (every RCPT refused) the
// session goes on with RSET and MAIL; a server that refuses a second EHLO
// on a session (OpenSMTPD) delivers the next message. Before the fix
// go-smtp's Reset re-sent EHLO, got 503, and the next message bounced.
func TestNoSecondEHLO(t *testing.T) {
	bothPaths(t, func(t *testing.T, pipelining bool) {
		f := newFakeMTA(t, fakeOpts{pipelining: pipelining, ehloOnce: true,
			rcpt: func(_ int, to string) string {
				if strings.HasPrefix(to, "bad") {
					return "550 5.1.1 no such user"
				}
				return ""
			}})
		c, _ := f.client(t, nil)
		if out, err := c.Deliver(context.Background(), delivery("m1", "bad@example.net")); err != nil || out.Rcpts[0].Code != 550 {
			t.Fatalf("m1: %v %v", out.Rcpts, err)
		}
		if out, err := c.Deliver(context.Background(), delivery("m2", "good@example.net")); err != nil || out.Rcpts[0] != nil {
			t.Fatalf("m2: %v %v\nwire: %s", out.Rcpts, err, f.verbs())
		}
		if n := f.count("EHLO"); n != 1 {
			t.Errorf("EHLO sent %d times: %s", n, f.verbs())
		}
		if len(f.Queued()) != 1 {
			t.Errorf("queued %v", summary(f.Queued()))
		}
	})
}

// TestNoContentAfterRefusedEnvelope: in a pipelined group, a server that
// answers 354 to DATA after refusing MAIL, or after refusing every RCPT,
// gets no content at all, not even a lone dot: relayd drops the connection
// (RFC 2920 §3.1, RFC 5321 §3.8). Before the fix it sent ".", which a
// server holding an older envelope queues as an empty message.
func TestNoContentAfterRefusedEnvelope(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mail, rcpt string
		want       int
	}{
		{"mail", "550 5.7.1 sender refused", "", 550},
		{"rcpt", "", "550 5.1.1 no such user", 550},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dots atomic.Int32
			f := newFakeMTA(t, fakeOpts{pipelining: true,
				mail: func(n int, _ string) string {
					if n == 1 {
						return tc.mail
					}
					return ""
				},
				rcpt: func(n int, _ string) string {
					if n == 1 {
						return tc.rcpt
					}
					return ""
				},
				data: func(n int, _ int) string {
					if n == 1 {
						return "354 go ahead" // whatever came before
					}
					return ""
				},
				dot: func(n int, m fakeMsg) string { dots.Add(1); return "" },
			})
			c, _ := f.client(t, nil)
			out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
			if err != nil || out.Rcpts[0] == nil || out.Rcpts[0].Code != tc.want {
				t.Fatalf("m1: %v %v", out.Rcpts, err)
			}
			out, err = c.Deliver(context.Background(), delivery("m2", "c@example.net"))
			if err != nil || out.Rcpts[0] != nil {
				t.Fatalf("m2: %v %v", out.Rcpts, err)
			}
			if n := dots.Load(); n != 1 {
				t.Errorf("%d final dots, want 1 (m2's only)", n)
			}
			if q := f.Queued(); len(q) != 1 || q[0].Data != testBody {
				t.Errorf("queued %v", summary(q))
			}
		})
	}
}

// TestBadSequenceAtMailRetried: a 503 to MAIL says relayd's protocol state
// is off, not that the message is bad: RSET, MAIL again, delivered. Before
// the fix the message bounced with 503.
func TestBadSequenceAtMailRetried(t *testing.T) {
	bothPaths(t, func(t *testing.T, pipelining bool) {
		f := newFakeMTA(t, fakeOpts{pipelining: pipelining,
			mail: func(n int, _ string) string {
				if n == 1 {
					return "503 5.5.1 Error: nested MAIL command"
				}
				return ""
			}})
		c, _ := f.client(t, nil)
		out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
		if err != nil || out.Rcpts[0] != nil {
			t.Fatalf("m1: %v %v\nwire: %s", out.Rcpts, err, f.verbs())
		}
		if !strings.Contains(f.verbs(), "RSET MAIL") {
			t.Errorf("wire: %s", f.verbs())
		}
		if q := f.Queued(); len(q) != 1 || q[0].Data != testBody {
			t.Errorf("queued %v", summary(q))
		}
	})
}

// TestBadSequenceAlwaysDefers: a server that answers 503 to every MAIL
// defers the message (a session *Error), never fails a recipient.
func TestBadSequenceAlwaysDefers(t *testing.T) {
	bothPaths(t, func(t *testing.T, pipelining bool) {
		f := newFakeMTA(t, fakeOpts{pipelining: pipelining,
			mail: func(int, string) string { return "503 5.5.1 bad sequence of commands" }})
		c, _ := f.client(t, nil)
		out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
		e := wantErr(t, err, StageMail)
		if !e.Temporary || e.Code != 503 || len(out.Rcpts) != 0 {
			t.Fatalf("err %v, out %v", e, out.Rcpts)
		}
	})
}

// TestSplitEnvelope: a smarthost that takes 2 recipients per transaction
// gets a 5-recipient message as 3 transactions on one connection, all
// delivered in one Deliver (issue 20 item 7). Before, the 3 over the limit
// were deferred until the next retry.
func TestSplitEnvelope(t *testing.T) {
	bothPaths(t, func(t *testing.T, pipelining bool) {
		f := newFakeMTA(t, fakeOpts{pipelining: pipelining, maxRcpts: 2})
		c, _ := f.client(t, nil)
		rcpts := []string{"r1@example.net", "r2@example.net", "r3@example.net", "r4@example.net", "r5@example.net"}
		out, err := c.Deliver(context.Background(), delivery("m1", rcpts...))
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range out.Rcpts {
			if r != nil {
				t.Errorf("%s: %v", rcpts[i], r)
			}
		}
		q := f.Queued()
		var got []string
		for _, m := range q {
			got = append(got, strings.Join(m.Rcpts, ","))
			if m.Data != testBody {
				t.Errorf("body differs")
			}
		}
		if want := "r1@example.net,r2@example.net r3@example.net,r4@example.net r5@example.net"; strings.Join(got, " ") != want {
			t.Errorf("transactions %q, want %q", got, want)
		}
		if f.Conns() != 1 {
			t.Errorf("Conns = %d", f.Conns())
		}
	})
}
