package queue

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/reply"
	"relayd/internal/stack"
	"relayd/maillog"
)

// transport is what one attempt says about the smarthost.
type transport int

const (
	transportUnknown transport = iota // no delivery was tried
	transportUp                       // Deliver returned without error
	transportDown                     // Deliver returned an error
)

// attempt runs one pass over a claimed message and updates the state of
// the smarthosts it went through from its result.
func (q *Queue) attempt(ctx context.Context, e *entry, c *claim) {
	q.work(ctx, e, c)
	s := &q.s
	s.mu.Lock()
	q.finishLocked(c)
	s.mu.Unlock()
	s.kick()
}

// work does one pass: expire or deliver, then notices, then persist and
// reschedule or remove. It always ends the claim on e.
func (q *Queue) work(ctx context.Context, e *entry, c *claim) {
	// The descriptor Commit kept serves the first pass only; retire has
	// taken it if the message is finished.
	defer q.spares.dropKept(e.id)
	q.s.mu.Lock()
	m := e.unsaved
	e.unsaved = nil
	// noMeta: nothing has written meta/ID.json, so a removal needs no
	// tombstone. True while m is the meta as committed (any admin
	// operation since would have dropped it) and this pass writes none:
	// a first attempt from Commit's persisted retry time, no bounce, no
	// expiry.
	noMeta := false
	if c := q.s.takeCommittedLocked(e); m == nil && c != nil {
		m, noMeta = c, true
	}
	q.s.mu.Unlock()
	var err error
	if m == nil {
		m, err = q.readMetaID(e.id)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			q.s.drop(e)
			return
		}
		q.log.Error("queue: cannot read meta, will retry", "id", e.id, "err", err)
		q.settle(e, nil, q.now().Add(q.cfg.MinBackoff))
		return
	}
	q.s.mu.Lock()
	skip := e.state != stClaimed // to be held or deleted
	q.s.mu.Unlock()
	if skip {
		q.settle(e, m, m.NextAttempt)
		return
	}
	now := q.now()
	// Routed now, not when it arrived: a reload's new routes apply. An
	// entry whose smarthosts changed makes no delivery in this claim; it
	// goes back, due now, into its new lanes.
	if lanes := q.lanesOf(m); !slices.Equal(lanes, e.lanes) && hasPending(m) {
		q.s.mu.Lock()
		e.lanes = lanes
		if noMeta {
			q.s.chargeLocked(e, m) // still the meta as committed
		}
		q.s.mu.Unlock()
		q.settle(e, m, now)
		return
	}
	q.s.mu.Lock()
	bounce := e.bounce
	e.bounce = false
	q.s.mu.Unlock()
	if bounce {
		noMeta = false
		q.returnToSender(m, now)
	}
	if hasPending(m) {
		if now.Sub(m.Arrival) >= q.cfg.MaxAge {
			noMeta = false
			q.expire(m, now)
		} else {
			var ok bool
			q.s.mu.Lock()
			fresh := e.fresh
			e.fresh = false
			q.s.mu.Unlock()
			noMeta = noMeta && fresh && m.Attempts == 0 // deliver writes no meta then
			if !fresh {
				// A body that changed on disk is not delivered (bodycrc.go).
				if err := q.checkBody(m); err != nil {
					if errors.Is(err, errBodyCorrupt) {
						q.quarantine(m.ID, err)
						q.s.drop(e)
						return
					}
					q.log.Error("queue: cannot read message to check it, will retry", "id", m.ID, "err", err)
					q.settle(e, nil, now.Add(q.cfg.MinBackoff))
					return
				}
			}
			if ok = q.deliver(ctx, m, c, now, fresh); !ok {
				q.settle(e, nil, now.Add(q.cfg.MinBackoff))
				return
			}
		}
	}
	lanes := q.lanesOf(m) // the smarthosts still to go through
	q.s.mu.Lock()
	e.lanes = lanes
	q.s.mu.Unlock()
	outstanding := q.notices(ctx, m, now)
	if !hasPending(m) && !outstanding {
		if err := q.removeMessage(m.ID, m, noMeta); err != nil {
			q.log.Error("queue: cannot remove finished message", "id", m.ID, "err", err)
			q.keepUnsaved(e, m)
			q.settle(e, m, now.Add(q.cfg.MinBackoff))
			return
		}
		q.s.drop(e)
		return
	}
	next := m.NextAttempt
	if !hasPending(m) || next.Before(now) { // only notices left to retry
		next = now.Add(q.cfg.MinBackoff)
	}
	if len(c.busy) > 0 && hasPending(m) && subset(lanes, c.busy) {
		// Only recipients of smarthosts that were busy are left: they
		// were not tried, and wait in their smarthost's lane now, not
		// for a retry.
		next = now
	}
	if exp := m.Arrival.Add(q.cfg.MaxAge); hasPending(m) && next.After(exp) {
		next = exp // expire on time, not up to MaxBackoff late
	}
	m.NextAttempt = next
	q.persist(e, m, next)
}

// deliver persists the attempt, calls the Deliverer and applies the
// outcome to m. ok is false when the attempt could not be persisted (and
// so was not made).
func (q *Queue) deliver(ctx context.Context, m *Meta, c *claim, now time.Time, fresh bool) (ok bool) {
	// Invariant 4: attempts and the retry time reach the disk first. The
	// first attempt's retry time was persisted by Commit; its count is
	// written with the outcome (a crash during it retries after the
	// persisted backoff, never at once, so a message that crashes relayd
	// cannot make it loop).
	// Only for a message this process committed (fresh): after a restart
	// even the first attempt is written first, so a message that crashes
	// relayd cannot make it loop.
	if m.Attempts == 0 && fresh {
		m.Attempts = 1
		m.LastAttempt = now
		m.NextAttempt = now.Add(q.backoff(1))
	} else {
		m.Attempts++
		m.LastAttempt = now
		m.NextAttempt = now.Add(q.backoff(m.Attempts))
		if err := q.writeMeta(m); err != nil {
			if !errors.Is(err, ErrNoSpace) {
				q.log.Error("queue: cannot persist attempt, not delivering", "id", m.ID, "err", err)
				return false
			}
			// A full spool must still drain: no outcome of an attempt
			// needs more space than not trying (success removes the
			// message; a deferral changes nothing on disk; a failure
			// notice that cannot be queued is retried). So the attempt
			// goes ahead from memory; work keeps its state there
			// (entry.unsaved) when it cannot be written either, and the
			// next pass persists it first once space returns. A crash in
			// between retries from the older state on disk: the attempt
			// is made again, as after any crash during delivery.
			q.log.Warn("queue: spool full, cannot persist attempt; delivering anyway, state kept in memory", "id", m.ID, "err", err)
		}
	}
	groups := q.groups(m, c)
	var wg sync.WaitGroup
	for _, g := range groups {
		if g.use == nil {
			continue
		}
		d := q.delivererFor(g.name)
		if d == nil { // a reload removed it meanwhile: the next pass routes again
			g.err = errors.New("smarthost " + g.name + " is no longer configured")
			continue
		}
		if len(groups) == 1 {
			g.out, g.err = d.Deliver(ctx, g.dl)
			break
		}
		// Several smarthosts: in parallel, so a slow one does not hold
		// the others' recipients.
		wg.Add(1)
		go func() {
			defer wg.Done()
			stack.Grow()
			g.out, g.err = d.Deliver(ctx, g.dl)
		}()
	}
	wg.Wait()
	delay := q.now().Sub(m.Arrival)
	for _, g := range groups {
		q.apply(m, g, now, delay)
	}
	return true
}

// group is the pending recipients of one message that take one smarthost.
type group struct {
	name string
	idx  []int // into m.Rcpts
	dl   *Delivery
	use  *laneUse // nil: its smarthost is not tried in this attempt
	out  Outcome
	err  error
}

// groups splits m's pending recipients by smarthost, in envelope order.
func (q *Queue) groups(m *Meta, c *claim) []*group {
	r := q.getRoutes()
	var gs []*group
	for i, rc := range m.Rcpts {
		if rc.State != Pending {
			continue
		}
		name := q.routeOf(r, m, rc.Addr)
		var g *group
		for _, x := range gs {
			if x.name == name {
				g = x
			}
		}
		if g == nil {
			g = &group{name: name, use: c.find(name), dl: &Delivery{ID: m.ID, From: m.From, Ret: m.Ret, EnvID: m.EnvID, UTF8: m.UTF8,
				Body: m.Envelope.Body, Size: m.Size, Open: q.opener(m)}}
			gs = append(gs, g)
		}
		g.idx = append(g.idx, i)
		g.dl.Rcpts = append(g.dl.Rcpts, rc)
	}
	return gs
}

// apply records one group's outcome in m and the mail log.
func (q *Queue) apply(m *Meta, g *group, now time.Time, delay time.Duration) {
	if g.use == nil {
		q.s.mu.Lock()
		why := ""
		if l := q.laneLocked(g.name); l.down {
			why = l.downWhy
		}
		q.s.mu.Unlock()
		rp := reply.Reply{Text: why}
		if why == "" {
			// RFC 3463 §3.5: X.4.1, no answer from host.
			rp = reply.Reply{Code: 451, Enhanced: "4.4.1", Text: "smarthost " + g.name + " is busy or backing off: not tried in this attempt"}
		}
		q.deferGroup(m, g, rp, now, delay)
		return
	}
	if g.err != nil {
		// No reply to a recipient: the session failed (Code 0, the
		// error's text).
		why := reply.Reply{Text: reply.OneLine(g.err.Error())}
		q.s.mu.Lock()
		g.use.l.downWhy = why.Text
		q.s.mu.Unlock()
		g.use.tr = transportDown
		q.deferGroup(m, g, why, now, delay)
		return
	}
	g.use.tr = transportUp
	out := g.out
	if out.Relay != "" {
		m.RemoteMTA = out.Relay
	}
	relay := relayLabel(g.name, out.Relay)
	for k, i := range g.idx {
		r := &m.Rcpts[i]
		var se *smtp.SMTPError
		if k < len(out.Rcpts) {
			se = out.Rcpts[k]
		} else {
			se = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
				Message: "deliverer returned no outcome for this recipient"}
		}
		r.Updated = now
		ev := maillog.Event{ID: m.ID, From: m.From, To: r.Addr, Relay: relay, Delay: delay}
		var rp reply.Reply
		if se != nil {
			rp = reply.FromSMTP(se)
		}
		r.SetReply(rp)
		switch {
		case se == nil || se.Code/100 == 2:
			r.State = Sent
			// The smarthost took over DSN duties: no relayed notice from us.
			r.Notified = out.DSNPassed
			ev.Status, ev.DSN = maillog.Sent, "2.0.0"
		case se.Code/100 == 5:
			r.State = Failed
			ev.Status, ev.DSN = maillog.Failed, rp.Enhanced
		default:
			ev.Status, ev.DSN = maillog.Deferred, rp.Enhanced
		}
		ev.Reply = r.LastReply
		maillog.Log(q.log, ev)
	}
}

// subset reports whether every lane of a (nil: the default) is in b.
func subset(a, b []string) bool {
	if len(a) == 0 {
		a = []string{DefaultLane}
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// deferGroup keeps g's recipients pending with rp as their last reply.
func (q *Queue) deferGroup(m *Meta, g *group, rp reply.Reply, now time.Time, delay time.Duration) {
	for _, i := range g.idx {
		r := &m.Rcpts[i]
		r.SetReply(rp)
		r.Updated = now
		maillog.Log(q.log, maillog.Event{ID: m.ID, From: m.From, To: r.Addr, Status: maillog.Deferred,
			Delay: delay, Reply: r.LastReply})
	}
}

// relayLabel is the relay= of the mail log: the Deliverer's "host[ip]:port"
// for the default smarthost (as before routes), "NAME[ip]:port" for a
// named one.
func relayLabel(name, relay string) string {
	if name == DefaultLane || relay == "" {
		return relay
	}
	if i := strings.IndexByte(relay, '['); i >= 0 {
		return name + relay[i:]
	}
	return name + "[" + relay + "]"
}

// returnToSender fails every pending recipient on the admin's order
// (relayd queue bounce); the failure notice follows as for any failure.
func (q *Queue) returnToSender(m *Meta, now time.Time) {
	rp := reply.Reply{Code: 550, Enhanced: "5.0.0", Text: "returned to the sender by the mail administrator (relayd queue bounce)"}
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.State != Pending {
			continue
		}
		r.State, r.Updated = Failed, now
		r.SetReply(rp)
		maillog.Log(q.log, maillog.Event{ID: m.ID, From: m.From, To: r.Addr, Status: maillog.Failed,
			Delay: now.Sub(m.Arrival), DSN: rp.Enhanced, Reply: r.LastReply})
	}
}

// expire fails every pending recipient with its last reply.
func (q *Queue) expire(m *Meta, now time.Time) {
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.State != Pending {
			continue
		}
		if r.LastReply == "" && r.Reply.IsZero() {
			// RFC 3463 §3.5: X.4.7, delivery time expired.
			r.SetReply(reply.Reply{Code: 451, Enhanced: "4.4.7", Text: "message expired before it could be delivered"})
		}
		r.State, r.Updated = Failed, now
		// RFC 3463 4.4.7: delivery time expired.
		maillog.Log(q.log, maillog.Event{ID: m.ID, From: m.From, To: r.Addr, Status: maillog.Expired,
			Delay: now.Sub(m.Arrival), DSN: "4.4.7", Reply: r.LastReply})
	}
}

// transportBackoff is the smarthost-wide wait before the next probe after n
// consecutive transport failures: 30 s doubling, capped at MinBackoff (a
// message's own first retry), so a smarthost that refuses connections,
// logins or says "rate limited" is not tried with every due message in a
// row, and one that comes back is noticed within MinBackoff.
func (q *Queue) transportBackoff(n int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < n && d < q.cfg.MinBackoff; i++ {
		d *= 2
	}
	return min(d, q.cfg.MinBackoff)
}

// backoff is min(MaxBackoff, MinBackoff*2^(attempts-1)) times a jitter
// factor in [0.9, 1.1), in floating point (no integer truncation).
func (q *Queue) backoff(attempts int) time.Duration {
	base := float64(q.cfg.MinBackoff) * math.Pow(2, float64(max(attempts, 1)-1))
	base = math.Min(base, float64(q.cfg.MaxBackoff))
	return time.Duration(base * (0.9 + 0.2*q.rand()))
}

func hasPending(m *Meta) bool {
	for _, r := range m.Rcpts {
		if r.State == Pending {
			return true
		}
	}
	return false
}
