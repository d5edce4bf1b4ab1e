package queue

import (
	"container/heap"
	"sync"
	"time"
)

// entry is all the scheduler keeps in memory per message. The envelope
// stays on disk until the message is due.
type entry struct {
	id   string
	next int64 // UnixNano of the next attempt
	idx  int32 // position in the heap, -1 when not in it
	// Desired state, set by admin operations; the goroutine holding the
	// claim (busy) writes it to disk before releasing.
	held   bool
	del    bool
	flush  bool
	bounce bool // return to the sender now (relayd queue bounce)
	busy   bool // claimed: being delivered or updated; not in the heap
	// home is the lane whose heap holds the entry (or will, when it is
	// released): its one smarthost, or the mixed lane for a message whose
	// pending recipients take several (lanes.go).
	home *lane
	// lanes names the smarthosts of its pending recipients, as routed when
	// it was committed, loaded or last attempted; nil is the default alone.
	lanes []string
	// fresh: committed by this process and never attempted; only then may
	// the first attempt run without writing its count first (Commit
	// persisted its retry time). Read and cleared by the claim holder.
	fresh bool
	// unsaved is delivery state that could not be written (disk full, I/O
	// error): the next pass starts from it instead of the older state on
	// disk, so recipients already sent are not sent again. Only failures
	// keep one, so memory does not grow with the queue.
	unsaved *Meta
	// committed is the meta as Commit wrote it, for the first attempt of a
	// fresh message, which then needs no read of the file it was just
	// written to. Any admin operation drops it (the disk is then the
	// truth); at most maxCommitted entries hold one, so memory does not
	// grow with a queue that is not being delivered.
	committed *Meta
	charged   *lane // the lane whose budget committed counts against
}

// maxCommitted bounds the entries holding their committed meta in memory.
const maxCommitted = 256

// entryHeap is a min-heap on next.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].next < h[j].next }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = int32(i), int32(j)
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.idx = int32(len(*h))
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// sched is the in-memory schedule: a map for lookups and, per smarthost
// (lane), a heap of the entries that may be attempted (not held, not busy)
// and the transport state (lanes.go).
type sched struct {
	mu         sync.Mutex
	byID       map[string]*entry
	wake       chan struct{}
	inflight   int
	nCommitted int // entries with a committed meta (at most 2*maxCommitted, see chargeLocked)
	// lanes holds one lane per smarthost name seen; def is "default"
	// ([upstream]) and mixed holds the entries whose recipients take
	// several smarthosts.
	lanes map[string]*lane
	def   *lane
	mixed *lane
	// newLane creates and registers the lane of a smarthost name
	// (Queue.newLaneLocked, which knows its rate limit).
	newLane func(name string) *lane
}

func (s *sched) init(defLimit *limiter, newLane func(string) *lane) {
	s.newLane = newLane
	s.byID = make(map[string]*entry)
	s.wake = make(chan struct{}, 1)
	s.def = &lane{name: DefaultLane, limit: defLimit}
	s.lanes = map[string]*lane{DefaultLane: s.def}
	s.mixed = &lane{name: ""}
}

// kick makes the scheduler re-evaluate.
func (s *sched) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sched) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byID[id]
	return ok
}

func (s *sched) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// add schedules a new message whose pending recipients take lanes.
func (s *sched) add(id string, next time.Time, held bool, lanes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(id, next, held, lanes)
}

// addLocked is add with s.mu held; it returns the new entry, or nil if id
// is already scheduled.
func (s *sched) addLocked(id string, next time.Time, held bool, lanes []string) *entry {
	if _, ok := s.byID[id]; ok {
		return nil
	}
	e := &entry{id: id, next: next.UnixNano(), idx: -1, held: held, lanes: lanes}
	e.home = s.homeLocked(lanes)
	s.byID[id] = e
	if !held {
		heap.Push(&e.home.h, e)
	}
	return e
}

// addFresh adds a message that this process just committed: due at next,
// its first attempt runs from memory (see entry.fresh).
// m, when not nil, is its meta as committed, kept for that attempt while
// fewer than maxCommitted entries hold one.
func (s *sched) addFresh(id string, next time.Time, m *Meta, lanes []string) {
	// One critical section: the dispatcher must never see the entry
	// without fresh and committed set (it would run an ordinary first
	// pass, write meta/ID.json, and a later pass would start from the
	// stale committed meta).
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.addLocked(id, next, false, lanes)
	if e == nil {
		return
	}
	e.fresh = true
	if m != nil {
		s.chargeLocked(e, m)
	}
}

// chargeLocked keeps m as e's committed meta if e's lane and the queue
// have room: each smarthost at most maxCommitted, all together twice that,
// so a smarthost that is down or slow, whose backlog keeps its entries
// waiting, cannot take the others' share. Caller holds s.mu.
func (s *sched) chargeLocked(e *entry, m *Meta) bool {
	if e.committed != nil || s.nCommitted >= 2*maxCommitted || e.home.nCommitted >= maxCommitted {
		return false
	}
	e.committed, e.charged = m, e.home
	s.nCommitted++
	e.home.nCommitted++
	return true
}

// roomLocked reports whether a message for lanes may keep its descriptor
// and committed meta for its first attempt (see chargeLocked).
func (s *sched) roomLocked(lanes []string) bool {
	h := s.def
	switch {
	case len(lanes) > 1:
		h = s.mixed
	case len(lanes) == 1:
		h = s.lanes[lanes[0]]
	}
	return s.nCommitted < 2*maxCommitted && (h == nil || h.nCommitted < maxCommitted)
}

// takeCommittedLocked returns and forgets e's committed meta (nil when it
// has none). Caller holds s.mu.
func (s *sched) takeCommittedLocked(e *entry) *Meta {
	m := e.committed
	if m != nil {
		e.committed = nil
		s.nCommitted--
		e.charged.nCommitted--
		e.charged = nil
	}
	return m
}

// claim marks e busy and takes it out of the heap. Caller holds s.mu.
func (s *sched) claimLocked(e *entry) {
	e.busy = true
	if e.idx >= 0 {
		heap.Remove(&e.home.h, int(e.idx))
	}
}

// releaseLocked ends a claim and puts e back according to its desired
// state. Caller holds s.mu.
func (s *sched) releaseLocked(e *entry, next time.Time, now time.Time) {
	e.busy = false
	if e.del {
		delete(s.byID, e.id)
		return
	}
	e.next = next.UnixNano()
	if e.flush {
		e.flush = false
		e.next = now.UnixNano()
	}
	e.home = s.homeLocked(e.lanes) // the lanes may have changed (lanes.go)
	if !e.held {
		heap.Push(&e.home.h, e)
	}
	s.kick()
}

// dropLocked forgets a finished message. Caller holds s.mu.
func (s *sched) dropLocked(e *entry) {
	if e.idx >= 0 {
		heap.Remove(&e.home.h, int(e.idx))
	}
	s.takeCommittedLocked(e)
	e.busy = false
	delete(s.byID, e.id)
}

func heapFix(h *entryHeap, e *entry) { heap.Fix(h, int(e.idx)) }
