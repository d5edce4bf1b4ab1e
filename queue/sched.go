package queue

import (
	"container/heap"
	"sync"
)

// entry is all the scheduler keeps in memory per message. The envelope
// stays on disk until the message is due.
type entry struct {
	id   string
	next int64 // UnixNano of the next attempt
	idx  int32 // position in the heap, -1 when not in it
	// state is where the entry is in its claim lifecycle (lifecycle.go:
	// waiting, held, claimed, ...); it changes only through moveLocked.
	state state
	// Facts orthogonal to the state (lifecycle.go): an admin flush that
	// arrived during a claim, and an admin bounce for the next attempt.
	flush  bool
	bounce bool // return to the sender now (relayd queue bounce)
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
// (lane), a heap of the entries that may be attempted (waiting, lifecycle.go)
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

func heapFix(h *entryHeap, e *entry) { heap.Fix(h, int(e.idx)) }
