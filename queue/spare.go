package queue

import (
	"bytes"
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
// fs/ext4/ialloc.c), so creating the message file costs more the higher
// the rate (bench/README.md, "Costs behind the code"). A rename allocates nothing, and an overwrite reuses the file's
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
//
// Descriptors travel with the files: Commit keeps the message's descriptor
// (spares.kept, at most maxKept) for the first attempt, which reads through
// it instead of opening msg/ID; retire moves it into the pool with the
// file, and Create writes through it. In the common case (delivered at the
// first attempt) a message costs no open(2) and no close(2) of its file.
// A kept descriptor is only ever used for its own message:
//   - it leaves kept only under spares.mu: at retire (into the pool with
//     the file, or closed when the file is unlinked), at the end of the
//     message's first pass and at an admin operation on it (closed: later
//     attempts open msg/ID), and at Open and Close (closed);
//   - openTracked takes it under the same lock, and a reader it made
//     reads nothing after its Close;
//   - while a reader uses it, nothing closes it: the last reader does
//     (keptFile.orphan);
//   - after Close nothing is kept (spares.closed): a Commit that finishes
//     while the queue closes closes its file.
//
// A kept descriptor waits for the message's first pass: while the smarthost
// is down (one probe at a time) or after a reload removed it, up to maxKept
// stay open until then. Without a deliverer Commit keeps none.
const (
	maxSpares     = 64
	maxSpareBytes = 32 << 20
	maxSpareFile  = 2 << 20
	maxKept       = 2 * maxCommitted // Commit keeps one only with room for a committed meta
)

type spares struct {
	mu      sync.Mutex
	free    []spare              // oldest first: taken once the rename out of msg/ is durable
	bytes   int64                // sum of free[i].size
	readers map[string]int       // message ID -> open readers (opener)
	kept    map[string]*keptFile // message ID -> its descriptor, kept since Commit
	closed  bool                 // the queue closed: keep closes instead
}

type spare struct {
	name string // file name in spare/ (the ID of the message it held)
	size int64
	gen  uint64 // Queue.flushStarted when it was retired
	// f is the file, open read-write, when its descriptor came along
	// (nil: Create opens it); fsize is then its exact length.
	f     *os.File
	fsize int64
}

// keptFile is a committed message's descriptor, open read-write.
type keptFile struct {
	f    *os.File
	size int64 // the file's length (body and trailer)
	// orphan: dropped while a reader used it; the last reader closes it.
	orphan bool
}

// keep keeps f, message id's file of size bytes, for its first attempt;
// beyond maxKept it closes f.
func (s *spares) keep(id string, f *os.File, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.kept) >= maxKept {
		f.Close()
		return
	}
	if s.kept == nil {
		s.kept = make(map[string]*keptFile)
	}
	s.kept[id] = &keptFile{f: f, size: size}
}

// dropKeptLocked forgets id's kept descriptor and returns it, or closes it
// later if a reader uses it (then it returns nil). Caller holds s.mu.
func (s *spares) dropKeptLocked(id string) *keptFile {
	k := s.kept[id]
	if k == nil {
		return nil
	}
	if s.readers[id] > 0 {
		k.orphan = true
		return nil
	}
	delete(s.kept, id)
	return k
}

// dropKept closes id's kept descriptor, if any (a message still queued
// after its first pass: later attempts open the file).
func (s *spares) dropKept(id string) {
	s.mu.Lock()
	k := s.dropKeptLocked(id)
	s.mu.Unlock()
	if k != nil {
		k.f.Close()
	}
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
	k := s.dropKeptLocked(id) // nil while a reader has it: then no reuse either
	if s.readers[id] == 0 && len(s.free) < maxSpares && size >= 0 && size <= maxSpareFile && s.bytes+size <= maxSpareBytes {
		err := rename(q.bodyPath(id), q.path("spare", id))
		if err == nil {
			sp := spare{name: id, size: size, gen: q.flushStarted.Load()}
			if k != nil {
				sp.f, sp.fsize = k.f, k.size
			}
			s.free = append(s.free, sp)
			s.bytes += size
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			if k != nil {
				k.f.Close()
			}
			return nil
		}
		// Anything else: try the unlink, which reports what is wrong.
	}
	if k != nil {
		k.f.Close()
	}
	if err := os.Remove(q.bodyPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: remove message %s: %w", id, err)
	}
	return nil
}

// openTracked opens message id's file for reading as openMessage does (or
// reads through its kept descriptor) and counts the reader until Close, so
// retire leaves the file alone meanwhile.
func (q *Queue) openTracked(id string, prefix []byte, bodyLen int64) (io.ReadCloser, error) {
	s := &q.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	var rc io.ReadCloser
	if k := s.kept[id]; k != nil && !k.orphan {
		rc = keptReader(k.f, prefix, bodyLen)
	} else {
		var err error
		if rc, err = openMessage(q.bodyPath(id), prefix, bodyLen); err != nil {
			return nil, err
		}
	}
	if s.readers == nil {
		s.readers = make(map[string]int)
	}
	s.readers[id]++
	return &trackedReader{ReadCloser: rc, done: func() {
		s.mu.Lock()
		var orphan *keptFile
		if s.readers[id]--; s.readers[id] <= 0 {
			delete(s.readers, id)
			if k := s.kept[id]; k != nil && k.orphan {
				delete(s.kept, id)
				orphan = k
			}
		}
		s.mu.Unlock()
		if orphan != nil {
			orphan.f.Close()
		}
	}}, nil
}

// keptReader reads prefix and then the first bodyLen bytes of f at their
// offsets (pread: the descriptor's own offset is left alone, and several
// readers may share it). Close does not close f, which the pool owns, but
// ends the reader: f may hold another message afterwards.
func keptReader(f *os.File, prefix []byte, bodyLen int64) io.ReadCloser {
	return &keptRead{r: io.MultiReader(bytes.NewReader(prefix), &exactReader{r: io.NewSectionReader(f, 0, bodyLen), n: bodyLen})}
}

type keptRead struct {
	r      io.Reader
	closed bool
}

func (k *keptRead) Read(p []byte) (int, error) {
	if k.closed {
		return 0, os.ErrClosed
	}
	return k.r.Read(p)
}

func (k *keptRead) Close() error {
	k.closed = true
	return nil
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

// shutdown closes every kept and pooled descriptor and keeps none from now
// on (Close).
func (s *spares) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id := range s.kept {
		if k := s.dropKeptLocked(id); k != nil {
			k.f.Close()
		}
	}
	for i, sp := range s.free {
		if sp.f != nil {
			sp.f.Close()
			s.free[i].f = nil
		}
	}
}

// cleanSpare empties spare/ (at Open and Close): its files are finished
// messages. At Open, a file also linked as msg/ID is left (see
// linkedFromMsg).
func (q *Queue) cleanSpare(linked map[uint64]bool) error {
	q.spares.mu.Lock()
	for _, sp := range q.spares.free {
		if sp.f != nil {
			sp.f.Close()
		}
	}
	for id := range q.spares.kept {
		if k := q.spares.dropKeptLocked(id); k != nil {
			k.f.Close()
		}
	}
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
