package queue

import (
	"context"
	"sync"
	"time"
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
