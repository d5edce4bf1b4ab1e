package queue

import (
	"context"
	"sync"
	"time"

	"relayd/internal/stack"
)

// maxWait bounds the scheduler's sleep so a wall-clock jump is noticed.
const maxWait = time.Minute

// Run schedules and delivers until ctx is done, then waits for in-flight
// deliveries. Their own context is cancelled Config.StopGrace after ctx, so
// a hung smarthost cannot block shutdown forever. Run must be called once.
func (q *Queue) Run(ctx context.Context) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	if q.getDeliverer() == nil {
		q.logHolding()
	}
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		timer.Reset(q.dispatch(workCtx, &wg))
		select {
		case <-ctx.Done():
			stop := time.AfterFunc(q.cfg.StopGrace, cancelWork)
			wg.Wait()
			stop.Stop()
			return nil
		case <-q.s.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts attempts for due messages while workers are free and
// returns how long to sleep until the next one is due. While the transport
// is down only one probe runs at a time, and not before the smarthost-wide
// backoff (transportBackoff) since the last failure has passed.
func (q *Queue) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Duration {
	d := q.getDeliverer()
	if d == nil {
		return maxWait
	}
	s := &q.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := q.now()
	n := now.UnixNano()
	for len(s.h) > 0 && s.inflight < q.cfg.Concurrency {
		e := s.h[0]
		if e.next > n {
			q.limit.noteLimited(false)
			return min(maxWait, time.Duration(e.next-n))
		}
		if s.down && s.probing {
			return maxWait
		}
		if s.down && n < s.downUntil { // smarthost-wide backoff
			return min(maxWait, time.Duration(s.downUntil-n))
		}
		// The rate limit is checked before the claim: a message over the
		// limit stays due in the heap, and no attempt is persisted for it
		// (invariant 4 applies only to attempts actually made).
		stamp, wait, why := q.limit.take(now)
		if wait > 0 {
			if q.limit.noteLimited(true) {
				q.log.Warn("queue: outbound rate limit reached, mail waits in the queue (not an attempt, no backoff)",
					"limit", why, "due", len(s.h), "next_in", wait.Round(time.Millisecond).String())
			}
			return min(maxWait, wait)
		}
		if s.down {
			s.probing = true
			e.probe = true
		}
		s.claimLocked(e)
		s.inflight++
		probe := e.probe
		wg.Add(1)
		go func() {
			defer wg.Done()
			stack.Grow() // the SMTP client and logging go deep
			q.attempt(ctx, e, d, probe, stamp)
		}()
	}
	if len(s.h) == 0 {
		q.limit.noteLimited(false)
	}
	return maxWait
}

// SetDeliverer replaces the Deliverer (live reload); the next attempt uses
// the new one. nil holds all mail.
func (q *Queue) SetDeliverer(d Deliverer) {
	q.deliverer.Store(&delivererBox{d})
	if d == nil {
		q.logHolding()
	}
	q.s.kick()
}

// TransportChanged tells the queue that the smarthost settings changed (a
// reload with a different [upstream]): the transport's failures are
// forgotten and all deferred mail is due now, so a fixed password or
// address takes effect at once instead of at each message's next retry.
func (q *Queue) TransportChanged() {
	s := &q.s
	s.mu.Lock()
	s.upLocked()
	n := s.allDueLocked(q.now())
	s.mu.Unlock()
	q.log.Info("queue: smarthost settings changed, deferred mail is due now", "messages", n)
	s.kick()
}

func (q *Queue) getDeliverer() Deliverer { return q.deliverer.Load().d }

func (q *Queue) logHolding() {
	q.log.Warn("no smarthost configured (upstream.address): mail is accepted and held in the queue until one is configured", "held", q.Len(), "state_dir", q.dir)
}

// Len is the number of messages in the queue, held ones included.
func (q *Queue) Len() int { return q.s.len() }
