package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRoutes routes by recipient domain: "b.example" to smarthost "b",
// everything else to the default.
type testRoutes struct {
	mu sync.Mutex
	b  *fakeDeliverer
	to map[string]string // recipient domain -> smarthost
}

func (r *testRoutes) Route(from, fromDomain, rcpt string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, d, _ := strings.Cut(rcpt, "@")
	if name, ok := r.to[d]; ok {
		return name
	}
	return DefaultLane
}
func (r *testRoutes) Deliverer(name string) Deliverer {
	if name == "b" {
		return r.b
	}
	return nil
}
func (r *testRoutes) RateLimit(string) RateLimit { return RateLimit{} }

func addrsOf(d *Delivery) string {
	var a []string
	for _, r := range d.Rcpts {
		a = append(a, r.Addr)
	}
	return strings.Join(a, ",")
}

// One smarthost down holds only its own recipients: a message split
// across two smarthosts has the other's recipient sent at once, the first
// one later, nothing failed; the default's recovery drains its backlog.
func TestLanesDownSmarthostHoldsOnlyItsOwn(t *testing.T) {
	h := newHarness(t, nil)
	b := &fakeDeliverer{fn: allOK}
	h.q.SetRoutes(&testRoutes{b: b, to: map[string]string{"b.example": "b"}})
	h.del.set(func(d *Delivery) (Outcome, error) { return Outcome{}, errors.New("421 default smarthost down") })
	h.run()
	split := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("one@a.example", "two@b.example")}, FromSMTP)
	onlyB := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("three@b.example")}, FromSMTP)
	waitFor(t, "b deliveries", func() bool { return b.countID(split) == 1 && b.countID(onlyB) == 1 })
	h.idle()
	m := h.meta(split)
	if m.Rcpts[0].State != Pending || m.Rcpts[1].State != Sent {
		t.Fatalf("split message: %+v", m.Rcpts)
	}
	if h.del.countID(split) != 1 {
		t.Fatalf("default tried %d times", h.del.countID(split))
	}
	for _, c := range b.calls {
		if strings.Contains(addrsOf(c), "a.example") {
			t.Errorf("smarthost b got %s", addrsOf(c))
		}
	}
	// Mail for b keeps flowing while the default is down.
	third := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("four@b.example")}, FromSMTP)
	waitFor(t, "b delivers while default is down", func() bool { return b.countID(third) == 1 })
	if !strings.Contains(h.logs.String(), "delivery to the smarthost is failing") {
		t.Errorf("no down line: %s", h.logs)
	}
	// The default comes back: its probe succeeds and the split message's
	// first recipient is sent.
	h.del.set(allOK)
	h.advance(11 * time.Minute)
	waitFor(t, "split message done", func() bool { return !h.q.s.has(split) })
	if n := b.countID(split); n != 1 {
		t.Errorf("b got the split message %d times", n)
	}
	if len(h.notif.list()) != 0 {
		t.Errorf("notices %+v", h.notif.list())
	}
}

// Reload: a queued message is routed at its attempt; new routes move it.
func TestLanesReroute(t *testing.T) {
	h := newHarness(t, nil)
	b := &fakeDeliverer{fn: allOK}
	r := &testRoutes{b: b, to: map[string]string{}}
	h.q.SetRoutes(r)
	h.del.set(func(d *Delivery) (Outcome, error) { return Outcome{}, errors.New("421 down") })
	h.run()
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("one@a.example")}, FromSMTP)
	waitFor(t, "first attempt", func() bool { return h.del.countID(id) == 1 })
	h.idle()
	r.mu.Lock()
	r.to["a.example"] = "b"
	r.mu.Unlock()
	h.q.SetRoutes(r)
	h.q.TransportChanged()
	waitFor(t, "rerouted", func() bool { return b.countID(id) == 1 && !h.q.s.has(id) })
	if h.del.countID(id) != 1 {
		t.Errorf("default tried %d times", h.del.countID(id))
	}
}

func TestRelayLabel(t *testing.T) {
	for _, c := range []struct{ name, relay, want string }{
		{DefaultLane, "smart.example[192.0.2.1]:587", "smart.example[192.0.2.1]:587"},
		{"ses", "email-smtp.example[192.0.2.2]:587", "ses[192.0.2.2]:587"},
		{"ses", "", ""},
	} {
		if got := relayLabel(c.name, c.relay); got != c.want {
			t.Errorf("relayLabel(%q, %q) = %q", c.name, c.relay, got)
		}
	}
}

// A smarthost whose backlog waits cannot take the other smarthosts' share
// of committed metas and kept descriptors (the first attempt's fast path).
func TestLanesCommittedBudgetPerSmarthost(t *testing.T) {
	h := newHarness(t, nil)
	b := &fakeDeliverer{fn: allOK}
	h.q.SetRoutes(&testRoutes{b: b, to: map[string]string{"b.example": "b"}})
	for i := range maxCommitted + 10 { // not running: they all wait
		h.commit(Envelope{From: "s@x.example", Rcpts: rcpts(fmt.Sprintf("r%d@a.example", i))}, FromSMTP)
	}
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("r@b.example")}, FromSMTP)
	s := &h.q.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.def.nCommitted; n != maxCommitted {
		t.Errorf("default lane holds %d committed metas, want %d", n, maxCommitted)
	}
	if e := s.byID[id]; e.committed == nil || e.home.name != "b" {
		t.Errorf("smarthost b's message got no committed meta (home %q)", e.home.name)
	}
}

// gate is a Deliverer that holds every delivery until released.
type gate struct {
	fakeDeliverer
	open chan struct{}
}

func (g *gate) Deliver(ctx context.Context, d *Delivery) (Outcome, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	return g.fakeDeliverer.Deliver(ctx, d)
}

// A smarthost whose workers are all busy (slow, not down) does not hold a
// split message's recipients of another smarthost; its own recipient then
// waits in its lane and goes as soon as a worker is free, not after a
// retry backoff.
func TestLanesBusySmarthostDoesNotHoldOthers(t *testing.T) {
	slow := &gate{fakeDeliverer: fakeDeliverer{fn: allOK}, open: make(chan struct{})}
	h := newHarness(t, func(c *Config) { c.Concurrency = 1; c.Deliverer = slow })
	b := &fakeDeliverer{fn: allOK}
	h.q.SetRoutes(&testRoutes{b: b, to: map[string]string{"b.example": "b"}})
	h.run()
	first := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("one@a.example")}, FromSMTP)
	waitFor(t, "default busy", func() bool {
		h.q.s.mu.Lock()
		defer h.q.s.mu.Unlock()
		return h.q.s.def.inflight == 1
	})
	split := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("two@a.example", "three@b.example")}, FromSMTP)
	waitFor(t, "b delivers while the default is busy", func() bool { return b.countID(split) == 1 })
	close(slow.open)
	waitFor(t, "both done", func() bool { return !h.q.s.has(first) && !h.q.s.has(split) })
	if n := slow.countID(split); n != 1 {
		t.Errorf("default got the split message %d times", n)
	}
	if len(h.notif.list()) != 0 {
		t.Errorf("notices %+v", h.notif.list())
	}
}

// A reload that removes a smarthost moves the mail queued for it to its
// new route.
func TestLanesRemovedSmarthost(t *testing.T) {
	h := newHarness(t, nil)
	b := &fakeDeliverer{fn: func(d *Delivery) (Outcome, error) { return Outcome{}, errors.New("421 b down") }}
	h.q.SetRoutes(&testRoutes{b: b, to: map[string]string{"b.example": "b"}})
	h.run()
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("one@b.example")}, FromSMTP)
	waitFor(t, "first attempt through b", func() bool { return b.countID(id) == 1 })
	h.idle()
	h.q.SetRoutes(&testRoutes{to: map[string]string{}}) // b is gone
	h.q.TransportChanged()
	waitFor(t, "delivered through the default", func() bool { return h.del.countID(id) == 1 && !h.q.s.has(id) })
}

// Mail held because [upstream] has no address goes through a smarthost
// that a reload adds a route to.
func TestLanesHeldMailRoutedByReload(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Deliverer = nil })
	h.run()
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("one@b.example")}, FromSMTP)
	if !h.q.s.has(id) {
		t.Fatal("held message gone")
	}
	b := &fakeDeliverer{fn: allOK}
	h.q.SetRoutes(&testRoutes{b: b, to: map[string]string{"b.example": "b"}})
	waitFor(t, "delivered through b", func() bool { return b.countID(id) == 1 && !h.q.s.has(id) })
}
