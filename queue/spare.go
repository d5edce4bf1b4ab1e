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
	free    []spare        // LIFO: the most recently written file is likeliest cached
	bytes   int64          // sum of free[i].size
	readers map[string]int // message ID -> open readers (opener)
}

type spare struct {
	name string // file name in spare/ (the ID of the message it held)
	size int64
}

// take removes a spare from the pool.
func (s *spares) take() (spare, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.free)
	if n == 0 {
		return spare{}, false
	}
	sp := s.free[n-1]
	s.free = s.free[:n-1]
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
			s.free = append(s.free, spare{name: id, size: size})
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

// cleanSpare empties spare/ at Open: its files are finished messages.
func (q *Queue) cleanSpare() error {
	return forEachName(q.path("spare"), func(name string) error {
		if err := os.Remove(q.path("spare", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove spare file: %w", err)
		}
		return nil
	})
}
