package queue

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// entryIn returns a scheduled entry in state st, with the heap and the map
// as moveLocked keeps them for that state.
func entryIn(s *sched, id string, st state) *entry {
	e := &entry{id: id, idx: -1, state: st, home: s.def}
	if st != stNone {
		s.byID[id] = e
	}
	if st == stWaiting {
		pushEntry(s, e)
	}
	return e
}

func pushEntry(s *sched, e *entry) {
	st := e.state
	e.state = stNone
	s.byID[e.id] = e
	s.moveLocked(e, evAdd) // the one way into a heap
	e.state = st
}

func newTestSched() *sched {
	s := &sched{}
	s.init(&limiter{}, func(name string) *lane { return &lane{name: name} })
	return s
}

// checkPlaced fails unless e's heap and map membership agree with its state.
func checkPlaced(t *testing.T, s *sched, e *entry, what string) {
	t.Helper()
	inHeap := e.idx >= 0 && int(e.idx) < len(e.home.h) && e.home.h[e.idx] == e
	if inHeap != (e.state == stWaiting) {
		t.Errorf("%s: state %s, in heap %v", what, e.state, inHeap)
	}
	if _, inMap := s.byID[e.id]; inMap != (e.state != stNone) {
		t.Errorf("%s: state %s, in map %v", what, e.state, inMap)
	}
}

// TestLifecycleTable walks the transition table: every listed transition
// is allowed and leaves the heap and the map consistent; every pair it does
// not list panics; and the table in lifecycle.go's doc is this table.
func TestLifecycleTable(t *testing.T) {
	listed := map[[2]int]bool{}
	for _, tr := range transitions {
		listed[[2]int{int(tr.from), int(tr.ev)}] = true
		what := fmt.Sprintf("%s --%s-->", tr.from, tr.ev)
		s := newTestSched()
		other := entryIn(s, "other", stWaiting) // a heap that is not empty
		e := entryIn(s, "e", tr.from)
		if tr.from == stNone {
			s.byID[e.id] = e // addLocked puts it in the map first
		} else {
			checkPlaced(t, s, e, what+" before")
		}
		s.moveLocked(e, tr.ev)
		if e.state != tr.to {
			t.Errorf("%s %s, want %s", what, e.state, tr.to)
		}
		checkPlaced(t, s, e, what)
		checkPlaced(t, s, other, what+" (other entry)")
	}
	for st := state(0); st < nStates; st++ {
		for ev := event(0); ev < nEvents; ev++ {
			if listed[[2]int{int(st), int(ev)}] {
				continue
			}
			s := newTestSched()
			e := entryIn(s, "e", st)
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s --%s--> allowed, not in the table", st, ev)
					}
				}()
				s.moveLocked(e, ev)
			}()
		}
	}

	src, err := os.ReadFile("lifecycle.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]bool{}
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "//"))
		if strings.HasPrefix(line, "//\t") && len(f) >= 3 && isName(stateNames[:], f[0]) && isName(eventNames[:], f[1]) {
			doc[strings.Join(f[:3], " ")] = true
		}
	}
	for _, tr := range transitions {
		row := fmt.Sprintf("%s %s %s", tr.from, tr.ev, tr.to)
		if !doc[row] {
			t.Errorf("lifecycle.go's doc lacks the row %q", row)
		}
		delete(doc, row)
	}
	for row := range doc {
		t.Errorf("lifecycle.go's doc lists %q, which the table does not", row)
	}
}

func isName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// TestLifecycleReleaseFlush: a flush asked during a claim makes the entry
// due now at the release, and a held one stays out of the heap with it.
func TestLifecycleReleaseFlush(t *testing.T) {
	s := newTestSched()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, st := range []state{stClaimed, stClaimedHeld} {
		e := entryIn(s, "e"+st.String(), st)
		e.flush = true
		s.releaseLocked(e, now.Add(time.Hour), now)
		if e.next != now.UnixNano() || e.flush {
			t.Errorf("%s: next %d flush %v after release, want now", st, e.next, e.flush)
		}
		checkPlaced(t, s, e, st.String())
	}
}
