package queue

import "time"

// firstDue is when a message read back at start-up is next due. One never
// attempted is due at once: it was held while no smarthost was configured
// (its commit persisted a first retry time that no attempt used, issue 16),
// or relayd stopped before trying it. That first attempt after a restart
// persists its count before it runs (deliver), so a message that crashes
// relayd gets one immediate try per restart at most, then its backoff.
func firstDue(m *Meta, now time.Time) time.Time {
	if m.Attempts == 0 && m.NextAttempt.After(now) {
		return now
	}
	return m.NextAttempt
}
