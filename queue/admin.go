package queue

import (
	"errors"
	"fmt"
	"io"
	"time"

	"relayd/maillog"
)

// settle ends a claim on e: it applies the desired state set by admin
// operations meanwhile (delete, hold) to disk, then puts e back in the
// schedule at next (now, if a flush was asked). m may be nil when the meta
// could not be read; then only a delete is applied.
func (q *Queue) settle(e *entry, m *Meta, next time.Time) {
	s := &q.s
	for {
		s.mu.Lock()
		held, del := e.held, e.del
		s.mu.Unlock()
		if del {
			if err := q.removeMessage(e.id, m, false); err != nil {
				// Keep the entry (still marked deleted) and try again:
				// dropping it would leave the files, and the message
				// would come back at the next start.
				q.log.Error("queue: delete failed, will retry", "id", e.id, "err", err)
				s.mu.Lock()
				s.releaseLocked(e, q.now().Add(q.cfg.MinBackoff), q.now())
				s.mu.Unlock()
				return
			}
			maillog.Log(q.log, maillog.Event{ID: e.id, Status: maillog.Deleted})
			s.mu.Lock()
			s.dropLocked(e)
			s.mu.Unlock()
			return
		}
		if m != nil && m.Held != held {
			m.Held = held
			if err := q.writeMeta(m); err != nil {
				q.log.Error("queue: cannot persist hold state", "id", e.id, "err", err)
			} else if held {
				maillog.Log(q.log, maillog.Event{ID: e.id, Status: maillog.Held, Reply: "held by the admin"})
			}
		}
		s.mu.Lock()
		if e.held == held && e.del == del {
			s.releaseLocked(e, next, q.now())
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// adminOp sets a desired state on each message (all when ids is empty) and,
// for messages nobody is working on, applies it to disk now. A message
// being delivered gets it when its attempt ends.
func (q *Queue) adminOp(ids []string, set func(e *entry)) error {
	s := &q.s
	if len(ids) == 0 {
		s.mu.Lock()
		for id := range s.byID {
			ids = append(ids, id)
		}
		s.mu.Unlock()
	}
	var errs []error
	for _, id := range ids {
		if err := checkID(id); err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		e := s.byID[id]
		if e == nil {
			s.mu.Unlock()
			errs = append(errs, fmt.Errorf("queue: %s: %w", id, ErrNotFound))
			continue
		}
		set(e)
		s.takeCommittedLocked(e) // the disk is the truth from now on
		if e.busy {
			s.mu.Unlock()
			q.spares.dropKept(id)
			continue
		}
		s.claimLocked(e)
		next := time.Unix(0, e.next)
		s.mu.Unlock()
		q.spares.dropKept(id)
		m, err := q.readMetaID(id)
		if err != nil {
			errs = append(errs, err)
			m = nil
		}
		q.settle(e, m, next)
	}
	return errors.Join(errs...)
}

// Hold stops delivery attempts for the messages (all when none are given).
func (q *Queue) Hold(ids ...string) error {
	return q.adminOp(ids, func(e *entry) { e.held = true })
}

// Release undoes Hold; the message keeps its schedule.
func (q *Queue) Release(ids ...string) error {
	return q.adminOp(ids, func(e *entry) { e.held = false })
}

// Delete removes messages without any notice and logs status=deleted.
func (q *Queue) Delete(ids ...string) error {
	if len(ids) == 0 {
		return errors.New("queue: delete needs at least one message ID")
	}
	return q.adminOp(ids, func(e *entry) { e.del = true })
}

// Bounce returns messages to their senders now: every pending recipient
// fails with a 5.0.0 "returned by the administrator" reply, a failure
// notice goes out as for any failure (NOTIFY and the null-sender rule
// apply), and the message leaves the queue. Held messages are released for
// it.
func (q *Queue) Bounce(ids ...string) error {
	if len(ids) == 0 {
		return errors.New("queue: bounce needs at least one message ID")
	}
	if err := q.adminOp(ids, func(e *entry) { e.held, e.bounce = false, true }); err != nil {
		return err
	}
	return q.Flush(ids...)
}

// Flush makes the messages (all when none are given) due now. Held messages
// stay held. An explicit flush also ends the "transport down" state, so
// every due message is tried, as the admin asked.
func (q *Queue) Flush(ids ...string) error {
	s := &q.s
	now := q.now().UnixNano()
	var errs []error
	s.mu.Lock()
	s.upLocked()
	flush := func(e *entry) {
		if e.busy {
			e.flush = true
			return
		}
		e.next = now
		if e.idx >= 0 {
			heapFix(&e.home.h, e)
		}
	}
	if len(ids) == 0 {
		for _, e := range s.byID {
			flush(e)
		}
	}
	for _, id := range ids {
		if e := s.byID[id]; validID(id) && e != nil {
			flush(e)
		} else {
			errs = append(errs, fmt.Errorf("queue: %q: %w", id, ErrNotFound))
		}
	}
	s.mu.Unlock()
	s.kick()
	return errors.Join(errs...)
}

// Get reads one message's meta.
func (q *Queue) Get(id string) (*Meta, error) { return q.readMetaID(id) }

// OpenMessage returns the message as it goes on the wire: prefix + body.
func (q *Queue) OpenMessage(id string) (io.ReadCloser, error) {
	m, err := q.readMetaID(id)
	if err != nil {
		return nil, err
	}
	return q.opener(m)()
}

// opener returns a function yielding prefix + body of m (the body ends
// where the meta trailer begins).
func (q *Queue) opener(m *Meta) func() (io.ReadCloser, error) {
	id, prefix, n := m.ID, m.Prefix, m.Size-int64(len(m.Prefix))
	return func() (io.ReadCloser, error) { return q.openTracked(id, prefix, n) }
}

// List calls fn for each message, reading one at a time (directory in
// chunks, one meta per message), so memory does not grow with the queue.
// It stops at fn's first error.
func (q *Queue) List(fn func(*Meta) error) error { return listMessages(q.dir, fn) }

// ReadOnlyList is List for `mailq` without a daemon: it reads dir without
// taking the lock and never writes.
func ReadOnlyList(dir string, fn func(*Meta) error) error { return listMessages(dir, fn) }
