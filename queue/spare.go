package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// Spare files.
//
// A finished message's file is not unlinked: it is renamed into spare/, and
// a later Create overwrites it in place instead of creating a file. On ext4
// without a journal, allocating an inode skips every inode freed in the last
// 30 s or more, looking each one up (recently_deleted() in
// fs/ext4/ialloc.c): at a few thousand messages a second, creating the
// message file was a quarter of relayd's CPU, and the cost grows with the
// rate. A rename allocates nothing, and an overwrite reuses the file's
// blocks.
//
// Invariants:
//
//   - spare/ holds no mail: nothing there is ever read as a message, and
//     Open empties it. A file leaves msg/ by one rename (as atomic as the
//     unlink it replaces: a crash that undoes it brings the message back, a
//     duplicate) and comes back to msg/ only as a new message, by the
//     committer's rename after its new content was flushed and the file
//     truncated to it (invariant 1 is unchanged).
//   - A retired file is overwritten only after a flush that started after
//     its rename out of msg/ has completed: until that rename is on disk, a
//     power loss could bring msg/OLD back with the start of another
//     message written over its body and its own trailer intact.
//   - A file is recycled only while no reader in this process has it open
//     (spares.readers, checked and renamed under the same lock that
//     opener takes to open): a reader never sees another message's bytes.
//     Other processes only read metas (mailq), which carry their ID and are
//     checked against the file name.
//   - The pool is bounded: maxSpares files, maxSpareBytes in total, none
//     larger than maxSpareFile; anything else is unlinked as before.
const (
	maxSpares     = 64
	maxSpareBytes = 32 << 20
	maxSpareFile  = 2 << 20
)

type spares struct {
	mu      sync.Mutex
	free    []spare        // oldest first: taken once the rename out of msg/ is durable
	bytes   int64          // sum of free[i].size
	readers map[string]int // message ID -> open readers (opener)
}

type spare struct {
	name string // file name in spare/ (the ID of the message it held)
	size int64
	gen  uint64 // Queue.flushStarted when it was retired
}

// take removes from the pool the oldest spare whose rename out of msg/ is
// durable: one retired before a flush that has completed since
// (durable is Queue.flushDurable).
func (s *spares) take(durable uint64) (spare, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 || s.free[0].gen >= durable {
		return spare{}, false // gens only grow along the slice
	}
	sp := s.free[0]
	s.free = s.free[1:]
	s.bytes -= sp.size
	return sp, true
}

// retire removes finished message id (about size bytes on disk) from msg/:
// into the pool when it fits and nobody reads it, else by unlinking it.
func (q *Queue) retire(id string, size int64) error {
	s := &q.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readers[id] == 0 && len(s.free) < maxSpares && size >= 0 && size <= maxSpareFile && s.bytes+size <= maxSpareBytes {
		err := rename(q.bodyPath(id), q.path("spare", id))
		if err == nil {
			s.free = append(s.free, spare{name: id, size: size, gen: q.flushStarted.Load()})
			s.bytes += size
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		// Anything else: try the unlink, which reports what is wrong.
	}
	if err := os.Remove(q.bodyPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: remove message %s: %w", id, err)
	}
	return nil
}

// openTracked opens message id's file for reading as openMessage does and
// counts the reader until Close, so retire leaves the file alone meanwhile.
func (q *Queue) openTracked(id string, prefix []byte, bodyLen int64) (io.ReadCloser, error) {
	s := &q.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, err := openMessage(q.bodyPath(id), prefix, bodyLen)
	if err != nil {
		return nil, err
	}
	if s.readers == nil {
		s.readers = make(map[string]int)
	}
	s.readers[id]++
	return &trackedReader{ReadCloser: rc, done: func() {
		s.mu.Lock()
		if s.readers[id]--; s.readers[id] <= 0 {
			delete(s.readers, id)
		}
		s.mu.Unlock()
	}}, nil
}

type trackedReader struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (t *trackedReader) Close() error {
	err := t.ReadCloser.Close()
	t.once.Do(t.done)
	return err
}

// cleanSpare empties spare/ (at Open and Close): its files are finished
// messages. At Open, a file also linked as msg/ID is left (see
// linkedFromMsg).
func (q *Queue) cleanSpare(linked map[uint64]bool) error {
	q.spares.mu.Lock()
	q.spares.free, q.spares.bytes = nil, 0
	q.spares.mu.Unlock()
	return forEachName(q.path("spare"), func(name string) error {
		p := q.path("spare", name)
		if q.keepLinked(p, linked) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove spare file: %w", err)
		}
		return nil
	})
}
