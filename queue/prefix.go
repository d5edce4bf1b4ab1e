package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrBusy: the message is being delivered right now; try again.
var ErrBusy = errors.New("queue: message is being delivered, try again")

// ReplacePrefix replaces the stored header prefix of a queued message
// (`relayd queue resign`, issue 16): fn gets the meta and the message as
// it goes on the wire (prefix + body) and returns the new prefix. The body
// file is never rewritten; the new prefix reaches the disk with the meta,
// atomically and fsynced (writeMeta), before ReplacePrefix returns. A
// message being delivered is not touched (ErrBusy); the message keeps its
// schedule.
func (q *Queue) ReplacePrefix(id string, fn func(m *Meta, msg io.Reader) ([]byte, error)) error {
	if err := checkID(id); err != nil {
		return err
	}
	s := &q.s
	s.mu.Lock()
	e := s.byID[id]
	switch {
	case e == nil:
		s.mu.Unlock()
		return fmt.Errorf("queue: %s: %w", id, ErrNotFound)
	case e.state.claimed():
		s.mu.Unlock()
		return fmt.Errorf("queue: %s: %w", id, ErrBusy)
	}
	s.takeCommittedLocked(e) // the disk is the truth from now on
	s.claimLocked(e)
	next := time.Unix(0, e.next)
	s.mu.Unlock()
	q.spares.dropKept(id)

	m, err := q.readMetaID(id)
	if err != nil {
		q.settle(e, nil, next)
		return err
	}
	rc, err := q.opener(m)()
	if err != nil {
		q.settle(e, m, next)
		return err
	}
	prefix, err := fn(m, rc)
	rc.Close()
	if err != nil || bytes.Equal(prefix, m.Prefix) {
		q.settle(e, m, next)
		return err
	}
	old := *m
	m.Size += int64(len(prefix) - len(m.Prefix))
	m.Prefix = prefix
	if err := q.writeMeta(m); err != nil {
		q.settle(e, &old, next)
		return err
	}
	q.settle(e, m, next)
	return nil
}
