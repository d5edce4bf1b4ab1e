package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// removeMessage removes a finished message.
//
// A message that never changed state after its commit (no meta/ID.json, the
// common case) is the single file msg/ID: renaming it into spare/ for reuse
// (retire, spare.go), or unlinking it, is atomic. A crash that undoes that
// brings the message back as committed: a duplicate, never a loss. m is
// its current meta (nil if unreadable; its size feeds the pool's
// accounting). noMeta says the
// caller knows there is no meta/ID.json (see work).
//
// A message with a meta/ID.json must never come back from its trailer (its
// state at commit: recipients since sent would get it again, every time).
// Its final state, marked Removed, is written to meta/ID.json (through the
// committer's batches), which is then renamed to the tombstone
// meta/ID.gone, which readers and recovery treat as "removed" (recovery
// only when the tombstone says Removed: a stray meta/ID.gone beside a live
// message is quarantined with it, never obeyed); msg/ID is unlinked only once the tombstone
// is durable, and the tombstone only once that unlink is durable. The
// janitor does both steps for every removal since its last pass with one
// fsync of meta/ and one of msg/. A crash at any point either
// undoes the removal (duplicate) or leaves a tombstone that the next Open
// completes.
func (q *Queue) removeMessage(id string, m *Meta, noMeta bool) error {
	size := metaSize(m)
	if noMeta {
		return q.retire(id, size) // no meta/ID.json: no tombstone to try
	}
	if _, err := os.Lstat(q.metaPath(id)); errors.Is(err, fs.ErrNotExist) {
		return q.retire(id, size)
	}
	if m != nil {
		final := *m
		final.Removed = true
		if err := q.writeMeta(&final); err != nil {
			// The removal goes on (a full spool must drain); a crash
			// before it completes leaves a tombstone that does not say
			// Removed, which recovery quarantines with the body (the
			// message was finished: nothing is lost or sent twice).
			q.log.Warn("queue: cannot write the final state of a removed message", "id", id, "err", err)
		}
	}
	err := rename(q.metaPath(id), q.gonePath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return q.retire(id, size)
	}
	if err != nil {
		return fmt.Errorf("queue: remove meta %s: %w", id, err)
	}
	// The janitor completes it: finishRemovals flushes the directories
	// itself (the same in both flush modes), for every removal since its
	// last pass.
	q.gcMu.Lock()
	q.gcBodies = append(q.gcBodies, id)
	q.gcMu.Unlock()
	return nil
}

// finishRemovals completes tombstoned removals, see removeMessage. On error
// the tombstones stay: readers see the messages as removed, and the next
// Open finishes the job.
func (q *Queue) finishRemovals(ids []string) error {
	if err := syncDir(q.path("meta")); err != nil {
		return err
	}
	for _, id := range ids {
		if err := os.Remove(q.bodyPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove body %s: %w", id, err)
		}
	}
	if err := syncDir(q.path("msg")); err != nil {
		return err
	}
	for _, id := range ids {
		if err := os.Remove(q.gonePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove tombstone %s: %w", id, err)
		}
	}
	return nil
}

// janitorInterval is how often tombstoned removals are completed.
const janitorInterval = 500 * time.Millisecond

// janitor completes tombstoned removals, see removeMessage.
func (q *Queue) janitor() {
	defer q.committer.Done()
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			q.collectBodies()
		case <-q.closing:
			q.collectBodies()
			return
		}
	}
}

func (q *Queue) collectBodies() {
	q.gcMu.Lock()
	ids := q.gcBodies
	q.gcBodies = nil
	q.gcMu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := q.finishRemovals(ids); err != nil {
		q.log.Error("queue: cannot complete removals, will retry", "messages", len(ids), "err", err)
		q.gcMu.Lock()
		q.gcBodies = append(q.gcBodies, ids...) // every step is idempotent
		q.gcMu.Unlock()
	}
}

// metaSize estimates the size of m's file from above, for the spare pool's
// bounds: the body, then the meta JSON (the prefix in base64, each
// recipient with its state, a fixed part) and the trailer. -1 without a
// meta: never recycled.
func metaSize(m *Meta) int64 {
	if m == nil {
		return -1
	}
	n := m.Size + int64(len(m.Prefix))/2 + 1024
	for _, r := range m.Rcpts {
		n += int64(len(r.Addr)+len(r.ORcpt)+2*len(r.LastReply)) + 256
	}
	return n
}
