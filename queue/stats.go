package queue

import (
	"strings"
	"time"
)

// Stats is a cheap snapshot for monitoring.
type Stats struct {
	Messages int       // in the queue, held ones included
	Held     int       // held by the admin
	Oldest   time.Time // arrival of the oldest message; zero when empty
	// Quarantined counts messages moved into corrupt/ since the queue
	// was opened (recovery, a body checksum mismatch).
	Quarantined int64
}

// Stats scans the in-memory schedule (no disk access). The oldest arrival
// comes from the IDs, whose first characters are the arrival time in Unix
// microseconds (see newID), so it costs one pass over the map.
func (q *Queue) Stats() Stats {
	s := &q.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Messages: len(s.byID), Quarantined: q.quarantined.Load()}
	oldest := ""
	for id, e := range s.byID {
		if e.state.held() {
			st.Held++
		}
		if oldest == "" || id < oldest {
			oldest = id
		}
	}
	if oldest != "" {
		st.Oldest = idTime(oldest)
	}
	return st
}

// idTime decodes the arrival time newID put into id (zero if malformed).
func idTime(id string) time.Time {
	if len(id) < idTimeLen {
		return time.Time{}
	}
	var us int64
	for i := 0; i < idTimeLen; i++ {
		v := strings.IndexByte(idAlphabet, id[i])
		if v < 0 {
			return time.Time{}
		}
		us = us<<5 | int64(v)
	}
	return time.UnixMicro(us)
}
