package queue

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestDeliveryPerRecipientOutcomes(t *testing.T) {
	h := newHarness(t, nil)
	var seen *Meta
	var seenErr error
	var seenMu sync.Mutex
	h.del.set(func(d *Delivery) (Outcome, error) {
		// Invariant 4: attempts and retry time are on disk before Deliver.
		seen, seenErr = h.q.Get(d.ID)
		if len(d.Rcpts) != 3 {
			return Outcome{}, errors.New("unexpected recipients")
		}
		return Outcome{Relay: "smart[192.0.2.1]:587", Rcpts: []*smtp.SMTPError{
			nil,
			{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user\nhere"},
			{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"},
		}}, nil
	})
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("ok@y.example", "bad@y.example", "later@y.example")}, FromSMTP)
	h.run()
	waitFor(t, "first attempt", func() bool { return h.del.count() == 1 })
	h.idle()
	// First attempt: Commit persisted the retry time (the count of 1
	// reaches the disk with the outcome).
	if seenErr != nil || seen.Attempts != 0 || !seen.NextAttempt.Equal(h.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("meta inside the first Deliver: %v attempts=%d next=%v", seenErr, seen.Attempts, seen.NextAttempt)
	}
	m := h.meta(id)
	if m.Rcpts[0].State != Sent || m.Rcpts[1].State != Failed || m.Rcpts[2].State != Pending {
		t.Fatalf("states: %+v", m.Rcpts)
	}
	if m.Rcpts[1].LastReply != "550 5.1.1 no such user here" || m.Rcpts[2].LastReply != "451 4.3.0 try later" {
		t.Errorf("replies: %q %q", m.Rcpts[1].LastReply, m.Rcpts[2].LastReply)
	}
	if m.RemoteMTA != "smart[192.0.2.1]:587" {
		t.Errorf("RemoteMTA %q", m.RemoteMTA)
	}
	failed := h.notif.kinds(NoticeFailed)
	if len(failed) != 1 || len(failed[0].Rcpts) != 1 || failed[0].Rcpts[0].Addr != "bad@y.example" ||
		failed[0].From != "s@x.example" || failed[0].IsNotice {
		t.Errorf("failed notices: %+v", failed)
	}
	logs := h.logs.String()
	for _, want := range []string{
		"to=ok@y.example relay=smart[192.0.2.1]:587 status=sent", "dsn=2.0.0",
		"to=bad@y.example relay=smart[192.0.2.1]:587 status=failed", "dsn=5.1.1",
		"to=later@y.example relay=smart[192.0.2.1]:587 status=deferred", "dsn=4.3.0",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// Next pass: only the deferred recipient is offered; then the message is gone.
	h.del.set(func(d *Delivery) (Outcome, error) {
		m, err := h.q.Get(d.ID)
		seenMu.Lock()
		seen, seenErr = m, err
		seenMu.Unlock()
		if len(d.Rcpts) != 1 || d.Rcpts[0].Addr != "later@y.example" {
			return Outcome{}, errors.New("wrong recipients on retry")
		}
		return allOK(d)
	})
	h.advance(10 * time.Minute)
	waitFor(t, "second attempt", func() bool { return h.del.count() == 2 })
	// Second attempt: count and retry time were on disk before Deliver.
	seenMu.Lock()
	defer seenMu.Unlock()
	if seenErr != nil || seen.Attempts != 2 || !seen.NextAttempt.After(h.clock.Now().Add(15*time.Minute)) {
		t.Errorf("meta inside the second Deliver: %v attempts=%d next=%v", seenErr, seen.Attempts, seen.NextAttempt)
	}
	waitFor(t, "message removed", func() bool { return h.q.Len() == 0 })
	// The janitor deletes the body once the meta's removal is durable.
	waitFor(t, "body removed", func() bool {
		_, err := os.Stat(h.q.bodyPath(id))
		return os.IsNotExist(err)
	})
	if len(h.notif.list()) != 1 {
		t.Errorf("notices: %+v", h.notif.list())
	}
}

// TestTransportDownProbeAndBacklog: a transport failure defers every
// recipient and marks the transport down; the other due messages then wait
// a smarthost-wide backoff (30 s doubling) and are probed one at a time,
// instead of each being tried in a row (issue 20: a rate-limited smarthost
// got all 20 queued messages at once). When a probe succeeds the whole
// backlog is due at once.
func TestTransportDownProbeAndBacklog(t *testing.T) {
	h := newHarness(t, nil)
	h.del.hold = 5 * time.Millisecond
	h.del.set(func(d *Delivery) (Outcome, error) {
		return Outcome{}, errors.New("upstream: mail: 421 4.7.0 too many messages, slow down")
	})
	var ids []string
	for range 8 {
		ids = append(ids, h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example", "b@y.example")}, FromSMTP))
	}
	h.run()
	waitFor(t, "first attempt", func() bool { return h.del.count() >= 1 })
	h.idle()
	// The first Concurrency (4) attempts were under way before any failed;
	// the other 4 wait for the backoff.
	n0 := h.del.count()
	if n0 != 4 {
		t.Fatalf("%d attempts right after the transport failed, want 4 (the others wait for the backoff)", n0)
	}
	h.del.maxIn.Store(0)
	for i, wait := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute} {
		h.advance(wait - time.Second)
		h.idle()
		if n := h.del.count(); n != n0+i {
			t.Fatalf("probe %d came before its backoff: %d attempts", i+1, n)
		}
		h.advance(time.Second)
		waitFor(t, fmt.Sprintf("probe %d (attempts %d)", i+1, h.del.count()), func() bool { return h.del.count() == n0+1+i })
		h.idle()
	}
	if got := h.del.maxIn.Load(); got != 1 {
		t.Errorf("%d concurrent attempts while the transport is down, want 1", got)
	}
	if n := h.logs.Count("delivery to the smarthost is failing"); n != 1 {
		t.Errorf("transport failure logged %d times, want once", n)
	}
	if !strings.Contains(h.logs.String(), "too many messages") {
		t.Errorf("the log does not say why: %s", h.logs)
	}
	for _, id := range ids {
		m := h.meta(id)
		for _, r := range m.Rcpts {
			if r.State != Pending {
				t.Errorf("%s: transport error must defer: %+v", id, r)
			}
		}
	}
	if len(h.notif.list()) != 0 {
		t.Errorf("notices for a transport error: %+v", h.notif.list())
	}
	// The smarthost comes back: the next probe succeeds and the whole
	// backlog (each message's own retry is minutes away) is due at once.
	h.del.set(allOK)
	h.advance(4 * time.Minute)
	waitFor(t, "backlog delivered", func() bool { return h.q.Len() == 0 })
	if h.del.count() != n0+3+8 {
		t.Errorf("%d deliveries, want %d", h.del.count(), n0+3+8)
	}
	if !strings.Contains(h.logs.String(), "backlog is due now") {
		t.Errorf("no transport-up log line")
	}
}

// TestTransportChangedDrainsNow: after a reload that changes the smarthost
// settings (TransportChanged), deferred mail is due at once and the
// transport backoff is forgotten: no waiting for each message's retry.
func TestTransportChangedDrainsNow(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set(func(d *Delivery) (Outcome, error) {
		return Outcome{}, errors.New("upstream: auth: 535 5.7.8 authentication failed")
	})
	for range 3 {
		h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	}
	h.run()
	waitFor(t, "first attempt", func() bool { return h.del.count() >= 1 })
	h.idle()
	h.del.set(allOK) // the password was fixed
	h.q.TransportChanged()
	waitFor(t, "all delivered", func() bool { return h.q.Len() == 0 })
}

func TestBackoffGrowsCappedWithJitter(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		q := &Queue{cfg: Config{MinBackoff: time.Minute, MaxBackoff: time.Hour}, rand: func() float64 { return r }}
		prev := time.Duration(0)
		for n := 1; n <= 12; n++ {
			got := q.backoff(n)
			base := min(time.Hour, time.Minute<<(n-1))
			lo, hi := time.Duration(float64(base)*0.9), time.Duration(float64(base)*1.1)
			if got < lo || got >= hi {
				t.Errorf("rand=%v attempt %d: %v not in [%v, %v)", r, n, got, lo, hi)
			}
			if got < prev {
				t.Errorf("rand=%v attempt %d: backoff shrank %v -> %v", r, n, prev, got)
			}
			prev = got
		}
		if q.backoff(40) >= 66*time.Minute {
			t.Errorf("backoff not capped: %v", q.backoff(40))
		}
	}
	// Float math: 1.5s * 2^0 * 0.9 keeps its fraction.
	q := &Queue{cfg: Config{MinBackoff: 1500 * time.Millisecond, MaxBackoff: time.Hour}, rand: func() float64 { return 0 }}
	if got := q.backoff(1); got != 1350*time.Millisecond {
		t.Errorf("backoff(1) = %v, want 1.35s", got)
	}
}

func TestExpiryFailsWithLastReply(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxAge = time.Hour; c.MaxBackoff = 20 * time.Minute })
	h.del.set(replyAll(452, smtp.EnhancedCode{4, 2, 2}, "mailbox full"))
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	h.run()
	for i := 1; h.q.Len() > 0 && i < 20; i++ {
		waitFor(t, "attempt", func() bool { return h.attempts(id) >= i || h.attempts(id) == -1 })
		h.idle()
		h.advance(20 * time.Minute)
	}
	waitFor(t, "expired", func() bool { return h.q.Len() == 0 })
	if !strings.Contains(h.logs.String(), "status=expired delay=1h0m0s dsn=4.4.7 reply=\"452 4.2.2 mailbox full\"") {
		t.Errorf("no expired line:\n%s", h.logs)
	}
	f := h.notif.kinds(NoticeFailed)
	if len(f) != 1 || f[0].Rcpts[0].LastReply != "452 4.2.2 mailbox full" || f[0].Rcpts[0].State != Failed {
		t.Errorf("failed notices: %+v", f)
	}
	// Attempts at 0, 20, 40 min; at 60 min it expires instead of a 4th attempt.
	if n := h.del.count(); n != 3 {
		t.Errorf("%d attempts before expiry, want 3", n)
	}
}

func TestDelayNoticeOnce(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.DelayWarning = 30 * time.Minute
		c.MaxAge = 10 * time.Hour
		c.MaxBackoff = 10 * time.Minute
	})
	h.del.set(replyAll(421, smtp.EnhancedCode{4, 4, 2}, "busy"))
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	arrival := h.clock.Now()
	h.run()
	for i := 1; i <= 10; i++ {
		waitFor(t, "attempt", func() bool { return h.attempts(id) >= i })
		h.idle()
		h.advance(10 * time.Minute)
	}
	d := h.notif.kinds(NoticeDelayed)
	if len(d) != 1 {
		t.Fatalf("%d delay notices, want 1", len(d))
	}
	if !d[0].WillRetryUntil.Equal(arrival.Add(10*time.Hour)) || d[0].Rcpts[0].LastReply != "421 4.4.2 busy" {
		t.Errorf("delay notice: %+v", d[0])
	}
	if !h.meta(id).DelayNotified {
		t.Error("DelayNotified not persisted")
	}
}

func TestNullSenderRules(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set(replyAll(550, smtp.EnhancedCode{5, 1, 1}, "unknown"))
	h.commit(Envelope{From: "", Rcpts: rcpts("a@y.example")}, FromSMTP)
	h.commit(Envelope{From: "", Rcpts: rcpts("b@y.example")}, FromNotice)
	h.commit(Envelope{From: "", Rcpts: rcpts("c@y.example")}, FromAdminNotice)
	// An admin copy sent from the admin's own address (no
	// upstream.null_sender) is never bounced either: it would loop.
	h.commit(Envelope{From: "admin@x.example", Rcpts: rcpts("admin@x.example")}, FromAdminNotice)
	h.run()
	waitFor(t, "all done", func() bool { return h.q.Len() == 0 })
	n := h.notif.list()
	if len(n) != 1 || !n[0].IsNotice || n[0].Rcpts[0].Addr != "b@y.example" {
		t.Errorf("notices: %+v", n)
	}
	if !strings.Contains(h.logs.String(), "failed notice to the admin failed too") {
		t.Error("dropped admin notice not logged")
	}
}

func TestNotifierErrorRetried(t *testing.T) {
	h := newHarness(t, nil)
	h.notif.fails = 1
	h.del.set(replyAll(550, smtp.EnhancedCode{5, 7, 1}, "denied"))
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	h.run()
	waitFor(t, "attempt", func() bool { return h.del.count() == 1 })
	h.idle()
	if h.q.Len() != 1 || h.meta(id).Rcpts[0].Notified {
		t.Fatal("message must stay until its notice is done")
	}
	h.advance(10 * time.Minute)
	waitFor(t, "removed", func() bool { return h.q.Len() == 0 })
	if n := h.notif.kinds(NoticeFailed); len(n) != 1 || h.del.count() != 1 {
		t.Errorf("notices %d, deliveries %d", len(n), h.del.count())
	}
}

func TestRelayedNotice(t *testing.T) {
	for _, passed := range []bool{false, true} {
		h := newHarness(t, nil)
		h.del.set(func(d *Delivery) (Outcome, error) {
			out, err := allOK(d)
			out.DSNPassed = passed
			return out, err
		})
		h.commit(Envelope{From: "s@x.example", Rcpts: []Recipient{
			{Addr: "a@y.example", Notify: []string{"SUCCESS"}}, {Addr: "b@y.example"}}}, FromSMTP)
		h.run()
		waitFor(t, "done", func() bool { return h.q.Len() == 0 })
		r := h.notif.kinds(NoticeRelayed)
		if passed && len(r) != 0 {
			t.Errorf("relayed notice although DSN was passed on: %+v", r)
		}
		if !passed && (len(r) != 1 || len(r[0].Rcpts) != 1 || r[0].Rcpts[0].Addr != "a@y.example") {
			t.Errorf("relayed notices: %+v", r)
		}
		h.stopRun()
	}
}
