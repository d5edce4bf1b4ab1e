package queue

import (
	"errors"
	"fmt"
	"io"
)

// Hold stops delivery attempts for the messages (all when none are given).
func (q *Queue) Hold(ids ...string) error {
	return q.adminOp(ids, evHold)
}

// Release undoes Hold; the message keeps its schedule.
func (q *Queue) Release(ids ...string) error {
	return q.adminOp(ids, evUnhold)
}

// Delete removes messages without any notice and logs status=deleted.
func (q *Queue) Delete(ids ...string) error {
	if len(ids) == 0 {
		return errors.New("queue: delete needs at least one message ID")
	}
	return q.adminOp(ids, evDelete)
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
	if err := q.adminOp(ids, evBounce); err != nil {
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
		if e.state.claimed() {
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
