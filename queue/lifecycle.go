package queue

import (
	"container/heap"
	"errors"
	"fmt"
	"time"

	"relayd/maillog"
)

// The claim lifecycle of a queued message, in memory. An entry is in
// exactly one state (entry.state). At most one goroutine holds the claim on
// a message at a time (the claimed states): the dispatcher's attempt, an
// admin operation or ReplacePrefix. Only the claim holder reads or writes
// the message's files; admin operations on a message someone else holds
// change only its desired disposition (hold, delete), which the holder
// applies to disk when it ends the claim (settle).
//
//	state          in a lane heap   meaning
//	none           no               not scheduled (before add, after drop)
//	waiting        yes              due at entry.next in its lane (entry.home)
//	held           no               held by the admin: never attempted
//	claimed        no               claimed; goes back to waiting
//	claimed-held   no               claimed; goes back to held
//	claimed-delete no               claimed; removed when the claim ends
//
// The transitions are the table transitions below; moveLocked allows no
// other (it panics: the heap and the map would no longer agree with the
// state). TestLifecycleTable walks it and checks this copy:
//
//	from           event    to             who
//	none           add      waiting        Commit (addFresh), Open (recover)
//	none           addHeld  held           Open (recover: Meta.Held)
//	waiting        claim    claimed        dispatchLane, adminOp, ReplacePrefix
//	held           claim    claimed-held   adminOp, ReplacePrefix
//	claimed        hold     claimed-held   Hold
//	claimed-held   hold     claimed-held   Hold
//	claimed-delete hold     claimed-delete Hold (the delete wins)
//	claimed        unhold   claimed        Release
//	claimed-held   unhold   claimed        Release
//	claimed-delete unhold   claimed-delete Release (the delete wins)
//	claimed        bounce   claimed        Bounce (sets entry.bounce)
//	claimed-held   bounce   claimed        Bounce (sets entry.bounce)
//	claimed-delete bounce   claimed-delete Bounce (the delete wins)
//	claimed        delete   claimed-delete Delete
//	claimed-held   delete   claimed-delete Delete
//	claimed-delete delete   claimed-delete Delete
//	claimed        release  waiting        settle
//	claimed-held   release  held           settle
//	claimed-delete release  none           settle, when the removal failed
//	claimed        drop     none           work (finished, gone, corrupt)
//	claimed-held   drop     none           work (gone, corrupt)
//	claimed-delete drop     none           work (gone, corrupt), settle (deleted)
//
// An admin event arrives only on a claimed entry: adminOp claims an idle
// one first, applies the event, and settles it at once.
//
// Besides the state an entry carries facts that are orthogonal to it, each
// read or cleared only by the claim holder (or under s.mu by Flush):
//   - fresh: committed by this process and never attempted (deliver may
//     skip writing the first attempt's count); it survives admin claims.
//   - bounce: an admin bounce waiting for the next attempt, which runs
//     returnToSender; it survives the release back to waiting.
//   - flush: an admin flush that arrived during a claim; the release makes
//     the entry due now whatever the holder computed, held or not.
//   - unsaved and committed: the meta the next pass starts from instead of
//     reading the disk (see entry).
type state uint8

const (
	stNone state = iota
	stWaiting
	stHeld
	stClaimed
	stClaimedHeld
	stClaimedDelete
	nStates
)

var stateNames = [nStates]string{"none", "waiting", "held", "claimed", "claimed-held", "claimed-delete"}

func (st state) String() string {
	if st < nStates {
		return stateNames[st]
	}
	return fmt.Sprintf("state(%d)", st)
}

// claimed reports whether a goroutine holds the claim.
func (st state) claimed() bool { return st >= stClaimed && st < nStates }

// held reports whether the admin's hold applies (now or at the release).
func (st state) held() bool { return st == stHeld || st == stClaimedHeld }

// event is what moves an entry from one state to another.
type event uint8

const (
	evAdd event = iota
	evAddHeld
	evClaim
	evHold
	evUnhold
	evBounce
	evDelete
	evRelease
	evDrop
	nEvents
)

var eventNames = [nEvents]string{"add", "addHeld", "claim", "hold", "unhold", "bounce", "delete", "release", "drop"}

func (ev event) String() string {
	if ev < nEvents {
		return eventNames[ev]
	}
	return fmt.Sprintf("event(%d)", ev)
}

// transition is one row of the table in the doc above.
type transition struct {
	from state
	ev   event
	to   state
}

var transitions = []transition{
	{stNone, evAdd, stWaiting},
	{stNone, evAddHeld, stHeld},
	{stWaiting, evClaim, stClaimed},
	{stHeld, evClaim, stClaimedHeld},
	{stClaimed, evHold, stClaimedHeld},
	{stClaimedHeld, evHold, stClaimedHeld},
	{stClaimedDelete, evHold, stClaimedDelete},
	{stClaimed, evUnhold, stClaimed},
	{stClaimedHeld, evUnhold, stClaimed},
	{stClaimedDelete, evUnhold, stClaimedDelete},
	{stClaimed, evBounce, stClaimed},
	{stClaimedHeld, evBounce, stClaimed},
	{stClaimedDelete, evBounce, stClaimedDelete},
	{stClaimed, evDelete, stClaimedDelete},
	{stClaimedHeld, evDelete, stClaimedDelete},
	{stClaimedDelete, evDelete, stClaimedDelete},
	{stClaimed, evRelease, stWaiting},
	{stClaimedHeld, evRelease, stHeld},
	{stClaimedDelete, evRelease, stNone},
	{stClaimed, evDrop, stNone},
	{stClaimedHeld, evDrop, stNone},
	{stClaimedDelete, evDrop, stNone},
}

// noState marks a pair the table does not list.
const noState state = 0xff

// nextState is transitions indexed by state and event.
var nextState = func() (t [nStates][nEvents]state) {
	for i := range t {
		for j := range t[i] {
			t[i][j] = noState
		}
	}
	for _, tr := range transitions {
		t[tr.from][tr.ev] = tr.to
	}
	return t
}()

// moveLocked applies ev to e: the new state from the table, and the heap
// and the map made to agree with it (in a heap exactly while waiting, in
// byID until none). The caller sets e.next and e.home first when e goes
// back to waiting, and puts e in byID before adding it. Caller holds s.mu.
func (s *sched) moveLocked(e *entry, ev event) {
	from := e.state
	to := noState
	if from < nStates && ev < nEvents {
		to = nextState[from][ev]
	}
	if to == noState {
		panic(fmt.Sprintf("queue: %s: no transition from %s on %s", e.id, from, ev))
	}
	e.state = to
	switch {
	case from == stWaiting && to != stWaiting:
		if e.idx >= 0 {
			heap.Remove(&e.home.h, int(e.idx))
		}
	case to == stWaiting && from != stWaiting:
		heap.Push(&e.home.h, e)
	}
	if to == stNone {
		s.takeCommittedLocked(e)
		delete(s.byID, e.id)
	}
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
	e := &entry{id: id, next: next.UnixNano(), idx: -1, lanes: lanes}
	e.home = s.homeLocked(lanes)
	s.byID[id] = e
	if held {
		s.moveLocked(e, evAddHeld)
	} else {
		s.moveLocked(e, evAdd)
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

// claimLocked takes the claim on an idle entry (waiting or held), which
// leaves its heap. Caller holds s.mu.
func (s *sched) claimLocked(e *entry) { s.moveLocked(e, evClaim) }

// releaseLocked ends a claim and puts e back according to its desired
// state: waiting (due at next, now if a flush was asked meanwhile), held,
// or forgotten if it was to be deleted. Caller holds s.mu.
func (s *sched) releaseLocked(e *entry, next time.Time, now time.Time) {
	if e.state == stClaimedDelete {
		s.moveLocked(e, evRelease)
		return
	}
	e.next = next.UnixNano()
	if e.flush {
		e.flush = false
		e.next = now.UnixNano()
	}
	e.home = s.homeLocked(e.lanes) // the lanes may have changed (lanes.go)
	s.moveLocked(e, evRelease)
	s.kick()
}

// drop ends a claim on a finished (or vanished) message and forgets it.
func (s *sched) drop(e *entry) {
	s.mu.Lock()
	s.moveLocked(e, evDrop)
	s.mu.Unlock()
}

// persist writes m (with the admin's desired state) and ends the claim.
func (q *Queue) persist(e *entry, m *Meta, next time.Time) {
	if err := q.writeMeta(m); err != nil {
		q.log.Error("queue: cannot persist delivery state, keeping it in memory", "id", m.ID, "err", err)
		q.keepUnsaved(e, m)
	}
	q.settle(e, m, next)
}

// keepUnsaved remembers state that could not be written, see entry.unsaved.
func (q *Queue) keepUnsaved(e *entry, m *Meta) {
	q.s.mu.Lock()
	e.unsaved = m
	q.s.mu.Unlock()
}

// settle ends a claim on e: it applies the desired state set by admin
// operations meanwhile (delete, hold) to disk, then puts e back in the
// schedule at next (now, if a flush was asked). m may be nil when the meta
// could not be read; then only a delete is applied.
func (q *Queue) settle(e *entry, m *Meta, next time.Time) {
	s := &q.s
	for {
		s.mu.Lock()
		st := e.state
		s.mu.Unlock()
		if st == stClaimedDelete {
			if err := q.removeMessage(e.id, m, false); err != nil {
				// The release forgets the entry: its files stay, and
				// the message comes back at the next start.
				q.log.Error("queue: delete failed, will retry", "id", e.id, "err", err)
				s.mu.Lock()
				s.releaseLocked(e, q.now().Add(q.cfg.MinBackoff), q.now())
				s.mu.Unlock()
				return
			}
			maillog.Log(q.log, maillog.Event{ID: e.id, Status: maillog.Deleted})
			s.drop(e)
			return
		}
		held := st.held()
		if m != nil && m.Held != held {
			m.Held = held
			if err := q.writeMeta(m); err != nil {
				q.log.Error("queue: cannot persist hold state", "id", e.id, "err", err)
			} else if held {
				maillog.Log(q.log, maillog.Event{ID: e.id, Status: maillog.Held, Reply: "held by the admin"})
			}
		}
		s.mu.Lock()
		if e.state == st {
			s.releaseLocked(e, next, q.now())
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// adminOp applies an admin event (hold, unhold, bounce, delete) to each
// message (all when ids is empty). A message nobody is working on is
// claimed for it and settled at once, so the disk has it when adminOp
// returns; a message being delivered gets it when its attempt ends.
func (q *Queue) adminOp(ids []string, ev event) error {
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
		mine := !e.state.claimed()
		if mine {
			s.claimLocked(e)
		}
		s.moveLocked(e, ev)
		if ev == evBounce {
			e.bounce = true
		}
		s.takeCommittedLocked(e) // the disk is the truth from now on
		next := time.Unix(0, e.next)
		s.mu.Unlock()
		q.spares.dropKept(id)
		if !mine {
			continue
		}
		m, err := q.readMetaID(id)
		if err != nil {
			errs = append(errs, err)
			m = nil
		}
		q.settle(e, m, next)
	}
	return errors.Join(errs...)
}
