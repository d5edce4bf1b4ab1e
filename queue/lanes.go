package queue

// Lanes: one schedule per smarthost.
//
// With [[route]]s, the recipients of a message may take different
// smarthosts. Each smarthost is a lane with its own heap of entries, its
// own transport state (down, probe, backoff), its own rate limit and its
// own concurrency (Config.Concurrency attempts at once): a smarthost that is
// down or slow holds only its own lane, never the others, and its recovery
// makes only its own backlog due (the instant drain). An entry whose
// pending recipients take one smarthost lives in that lane; the intake
// splits a message per smarthost, so that is the rule. One whose
// recipients take several (routes changed by a reload since it was queued)
// lives in the mixed lane, and each of its attempts delivers to every
// smarthost that is not backing off, in parallel, and defers the rest
// without trying them.
//
// The route is decided when a message is attempted, not when it arrived
// (a reload applies new routes to queued mail): an entry's lanes are
// computed at commit, at load and at every attempt from the current Routes;
// an attempt that finds them changed makes no delivery and moves the entry
// to its new lane, due at once.

import (
	"container/heap"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"relayd/internal/stack"
)

// DefaultLane is the smarthost of Config.Deliverer ([upstream]).
const DefaultLane = "default"

// Routes is how the queue learns each recipient's smarthost and the
// Deliverer and rate limit of each smarthost other than DefaultLane (whose
// Deliverer and rate limit are SetDeliverer's and SetRateLimit's).
type Routes interface {
	// Route names the smarthost of recipient rcpt of a message from
	// envelope sender from with header From domain fromDomain.
	Route(from, fromDomain, rcpt string) string
	// Deliverer returns the named smarthost's Deliverer; nil holds its mail.
	Deliverer(name string) Deliverer
	// RateLimit returns the named smarthost's rate limit.
	RateLimit(name string) RateLimit
}

type routesBox struct{ r Routes }

// lane is one smarthost's part of the schedule. Guarded by sched.mu.
type lane struct {
	name     string
	h        entryHeap
	inflight int
	down     bool // the last transport-level attempt failed
	probing  bool // a probe attempt is in flight while down
	// While down, no probe starts before downUntil (UnixNano): the
	// smarthost-wide backoff, grown with downCount consecutive failures.
	downUntil int64
	downCount int
	downWhy   string   // the last transport failure, for the log
	limit     *limiter // nil for the mixed lane
	// nCommitted counts its entries holding a committed meta (and, in
	// step, a kept descriptor): at most maxCommitted (sched.chargeLocked).
	nCommitted int
}

// laneUse is one lane an attempt delivers through.
type laneUse struct {
	l     *lane
	stamp int64 // the rate-limit reservation
	probe bool  // this attempt is the lane's single probe while it is down
	tr    transport
}

// claim is what dispatch reserved for one attempt.
type claim struct {
	use []laneUse
	// busy names the lanes of a mixed entry skipped because all their
	// workers were taken (not because they are down).
	busy []string
}

func (c *claim) find(name string) *laneUse {
	for i := range c.use {
		if c.use[i].l.name == name {
			return &c.use[i]
		}
	}
	return nil
}

// SetRoutes replaces the routes (live reload); nil sends all mail through
// the default Deliverer. Queued entries move to their new smarthosts at
// their next attempt; call TransportChanged to make that now.
func (q *Queue) SetRoutes(r Routes) {
	q.routes.Store(&routesBox{r})
	q.s.mu.Lock()
	for name, l := range q.s.lanes {
		if name != DefaultLane {
			l.limit.set(q.laneLimit(name))
		}
	}
	q.s.mu.Unlock()
	if r != nil && q.getDeliverer() == nil {
		// Mail held for a missing [upstream] is never attempted, so no
		// attempt would route it again: move what the new routes send
		// elsewhere now.
		go q.rehomeHeld()
	}
	q.s.kick()
}

// rehomeHeld reads every queued message once and moves those waiting in
// the default lane whose recipients the current routes send elsewhere.
func (q *Queue) rehomeHeld() {
	moved := 0
	err := q.List(func(m *Meta) error {
		select {
		case <-q.closing:
			return errClosed
		default:
		}
		lanes := q.lanesOf(m)
		if lanes == nil {
			return nil
		}
		s := &q.s
		s.mu.Lock()
		defer s.mu.Unlock()
		e := s.byID[m.ID]
		if e == nil || e.state != stWaiting || e.home != s.def || e.idx < 0 {
			return nil
		}
		heap.Remove(&s.def.h, int(e.idx))
		e.lanes = lanes
		e.home = s.homeLocked(lanes)
		heap.Push(&e.home.h, e)
		moved++
		return nil
	})
	if err != nil && !errors.Is(err, errClosed) {
		q.log.Error("queue: routing held mail again", "err", err)
	}
	if moved > 0 {
		q.log.Info("queue: held mail that new routes send through another smarthost moved to it", "messages", moved)
		q.s.kick()
	}
}

var errClosed = errors.New("queue closed")

func (q *Queue) getRoutes() Routes {
	if b := q.routes.Load(); b != nil {
		return b.r
	}
	return nil
}

func (q *Queue) laneLimit(name string) RateLimit {
	if r := q.getRoutes(); r != nil {
		return r.RateLimit(name)
	}
	return RateLimit{}
}

// delivererFor is the named smarthost's Deliverer (nil: hold).
func (q *Queue) delivererFor(name string) Deliverer {
	if name == DefaultLane {
		return q.getDeliverer()
	}
	if r := q.getRoutes(); r != nil {
		return r.Deliverer(name)
	}
	return nil
}

// routeOf names the smarthost of one recipient of m.
func (q *Queue) routeOf(r Routes, m *Meta, rcpt string) string {
	if r == nil {
		return DefaultLane
	}
	from := m.From
	if m.RouteSender != "" {
		from = m.RouteSender
	}
	if name := r.Route(from, m.FromDomain, rcpt); name != "" {
		return name
	}
	return DefaultLane
}

// lanesOf names the smarthosts of m's pending recipients in envelope
// order; nil when all take the default.
func (q *Queue) lanesOf(m *Meta) []string {
	r := q.getRoutes()
	if r == nil {
		return nil
	}
	var out []string
	for _, rc := range m.Rcpts {
		if rc.State != Pending {
			continue
		}
		if name := q.routeOf(r, m, rc.Addr); !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 1 && out[0] == DefaultLane {
		return nil
	}
	return out
}

// laneLocked returns the lane of name, creating it. Lanes are few: one per
// smarthost name ever configured.
func (q *Queue) laneLocked(name string) *lane {
	if l := q.s.lanes[name]; l != nil {
		return l
	}
	return q.s.newLane(name)
}

// newLaneLocked creates the lane of name (sched.newLane).
func (q *Queue) newLaneLocked(name string) *lane {
	l := &lane{name: name, limit: &limiter{}}
	l.limit.set(q.laneLimit(name))
	q.s.lanes[name] = l
	return l
}

// homeLocked is the lane whose heap holds an entry with these lanes.
func (s *sched) homeLocked(lanes []string) *lane {
	switch len(lanes) {
	case 0:
		return s.def
	case 1:
		if l := s.lanes[lanes[0]]; l != nil {
			return l
		}
		return s.newLane(lanes[0])
	}
	return s.mixed
}

// allLanes is every lane with a heap, the mixed one last.
func (s *sched) allLanes() []*lane {
	out := make([]*lane, 0, len(s.lanes)+1)
	for _, l := range s.lanes {
		out = append(out, l)
	}
	return append(out, s.mixed)
}

// allDueLocked makes every schedulable entry due at now (the backlog after
// the smarthost settings changed). Caller holds s.mu.
func (s *sched) allDueLocked(now time.Time) int {
	n := 0
	for _, l := range s.allLanes() {
		n += l.dueLocked(now, "")
	}
	return n
}

// laneDueLocked makes l's backlog due at now, with the mixed entries that
// have recipients for it: the instant drain when l's smarthost is back.
func (s *sched) laneDueLocked(l *lane, now time.Time) int {
	return l.dueLocked(now, "") + s.mixed.dueLocked(now, l.name)
}

// dueLocked makes the entries of l's heap due at now; with only set, just
// those with that lane among theirs.
func (l *lane) dueLocked(now time.Time, only string) int {
	n, k := now.UnixNano(), 0
	for _, e := range l.h {
		if only != "" && !slices.Contains(e.lanes, only) {
			continue
		}
		if e.next > n {
			e.next = n
		}
		k++
	}
	heap.Init(&l.h)
	return k
}

// upLocked forgets every smarthost's failures. Caller holds s.mu.
func (s *sched) upLocked() {
	for _, l := range s.lanes {
		l.upLocked()
	}
}

func (l *lane) upLocked() { l.down, l.downUntil, l.downCount = false, 0, 0 }

// blockedLocked says whether lane l may start an attempt at n: wait is how
// long until it might (0: now), ok false when only an outside event (an
// attempt ending, a reload) can unblock it.
func (q *Queue) blockedLocked(l *lane, n int64) (blocked bool, wait time.Duration) {
	if q.delivererFor(l.name) == nil {
		return true, maxWait
	}
	if l.inflight >= q.cfg.Concurrency {
		return true, maxWait // an attempt's end kicks the scheduler
	}
	if l.down && l.probing {
		return true, maxWait
	}
	if l.down && n < l.downUntil { // smarthost-wide backoff
		return true, time.Duration(l.downUntil - n)
	}
	return false, 0
}

// dispatch starts attempts for due messages while each lane has free
// workers and returns how long to sleep until the next one is due. While a
// smarthost is down only one probe runs through it at a time, and not
// before its backoff (transportBackoff) since the last failure has passed.
func (q *Queue) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Duration {
	s := &q.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := q.now()
	wait := maxWait
	for _, l := range s.allLanes() {
		wait = min(wait, q.dispatchLane(ctx, wg, l, now))
	}
	return max(wait, 0)
}

func (q *Queue) dispatchLane(ctx context.Context, wg *sync.WaitGroup, l *lane, now time.Time) time.Duration {
	n := now.UnixNano()
	for len(l.h) > 0 {
		e := l.h[0]
		if e.next > n {
			if l.limit != nil {
				l.limit.noteLimited(false)
			}
			return min(maxWait, time.Duration(e.next-n))
		}
		var c *claim
		if l == q.s.mixed {
			var wait time.Duration
			if c, wait = q.claimMixedLocked(e, now); c == nil {
				// None of its smarthosts can take it now: it waits in
				// memory (its persisted schedule is unchanged).
				e.next = n + int64(max(wait, time.Second))
				heapFix(&l.h, e)
				continue
			}
		} else if l != q.s.def && q.delivererFor(l.name) == nil {
			// Its smarthost is gone (a reload removed it): the attempt,
			// which tries no smarthost, routes the entry again.
			c = &claim{}
		} else {
			if blocked, wait := q.blockedLocked(l, n); blocked {
				return min(maxWait, wait)
			}
			// The rate limit is checked before the claim: a message over
			// the limit stays due in the heap, and no attempt is
			// persisted for it (invariant 4 applies only to attempts
			// actually made).
			stamp, wait, why := l.limit.take(now)
			if wait > 0 {
				if l.limit.noteLimited(true) {
					q.log.Warn("queue: outbound rate limit reached, mail waits in the queue (not an attempt, no backoff)",
						laneAttrs(l, "limit", why, "due", len(l.h), "next_in", wait.Round(time.Millisecond).String())...)
				}
				return min(maxWait, wait)
			}
			c = &claim{use: []laneUse{{l: l, stamp: stamp, probe: l.down}}}
		}
		q.s.claimLocked(e)
		q.s.inflight++
		for _, u := range c.use {
			u.l.inflight++
			if u.probe {
				u.l.probing = true
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stack.Grow() // the SMTP client and logging go deep
			q.attempt(ctx, e, c)
		}()
	}
	if l.limit != nil {
		l.limit.noteLimited(false)
	}
	return maxWait
}

// claimMixedLocked reserves the lanes a mixed entry can go through now:
// every lane of it that is not backing off or busy, provided none of those
// is over its rate limit. nil, wait when none can.
func (q *Queue) claimMixedLocked(e *entry, now time.Time) (*claim, time.Duration) {
	n := now.UnixNano()
	c := &claim{}
	wait := maxWait
	refund := func() {
		for _, u := range c.use {
			u.l.limit.refund(u.stamp)
		}
	}
	for _, name := range e.lanes {
		l := q.laneLocked(name)
		blocked, w := q.blockedLocked(l, n)
		if blocked {
			wait = min(wait, w)
			if l.inflight >= q.cfg.Concurrency && q.delivererFor(name) != nil {
				// Busy, not down: the others go now; its recipients
				// then wait in its own lane (work), as if the message
				// had been split when it arrived.
				c.busy = append(c.busy, name)
				wait = min(wait, time.Second)
			}
			continue // down, probing, held or busy: its recipients wait
		}
		stamp, w, _ := l.limit.take(now)
		if w > 0 {
			refund()
			return nil, w
		}
		c.use = append(c.use, laneUse{l: l, stamp: stamp, probe: l.down})
	}
	if len(c.use) == 0 {
		return nil, wait
	}
	return c, 0
}

// finishLocked ends an attempt's claim on its lanes and updates their
// transport state from its results. Caller holds s.mu.
func (q *Queue) finishLocked(c *claim) {
	s := &q.s
	s.inflight--
	for i := range c.use {
		u := &c.use[i]
		l := u.l
		l.inflight--
		if u.probe {
			l.probing = false
		}
		if u.tr == transportUnknown { // no hand-off happened: give the rate-limit slot back
			l.limit.refund(u.stamp)
		}
		switch u.tr {
		case transportUp:
			if l.down {
				l.upLocked()
				n := s.laneDueLocked(l, q.now())
				q.log.Info("queue: smarthost is back, deferred backlog is due now", laneAttrs(l, "messages", n)...)
			}
		case transportDown:
			// Attempts that were already under way when the transport went
			// down do not grow the backoff: only a failed probe does.
			if !l.down || u.probe {
				l.downCount++
			}
			wait := q.transportBackoff(l.downCount)
			l.downUntil = q.now().Add(wait).UnixNano()
			if !l.down {
				// Not "unreachable": the cause may be a refused login, a
				// rate limit or a timeout; the reason says which.
				q.log.Warn("queue: delivery to the smarthost is failing, all mail is deferred; probing with one message at a time",
					laneAttrs(l, "reason", l.downWhy, "next_probe_in", wait.String())...)
			}
			l.down = true
		}
	}
}

// laneAttrs adds smarthost=NAME to a log line about a lane other than the
// default (whose lines stay as they were before routes).
func laneAttrs(l *lane, args ...any) []any {
	if l.name == DefaultLane {
		return args
	}
	return append([]any{"smarthost", l.name}, args...)
}
