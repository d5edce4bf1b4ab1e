package queue

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// RateLimit caps how many messages the queue hands to the Deliverer, to
// stay inside an ISP's sending quota. Zero fields mean no limit.
//
// Semantics (the spec leaves burst behaviour open; this is the choice):
//   - PerMinute paces: hand-offs are spaced at least one minute/PerMinute
//     apart, with no burst (60 per minute means at most one per second).
//     ISPs that count per minute usually enforce it over short windows, so
//     spreading is what keeps the account safe.
//   - PerHour and PerDay are sliding-window caps: at most N hand-offs in any
//     window of that length, bursts allowed up to N.
//
// A hand-off is one call of Deliverer.Deliver (one message, all its pending
// recipients). Messages over the limit stay due in the schedule: no attempt
// is counted or persisted for them, no backoff grows, nothing is rejected or
// bounced (RFC 5321 §4.5.4.1 leaves retry strategy to the sender).
type RateLimit struct {
	PerMinute int
	PerHour   int
	PerDay    int
}

func (r RateLimit) zero() bool { return r.PerMinute <= 0 && r.PerHour <= 0 && r.PerDay <= 0 }

func (r RateLimit) String() string {
	var p []string
	if r.PerMinute > 0 {
		p = append(p, fmt.Sprintf("max_per_minute=%d", r.PerMinute))
	}
	if r.PerHour > 0 {
		p = append(p, fmt.Sprintf("max_per_hour=%d", r.PerHour))
	}
	if r.PerDay > 0 {
		p = append(p, fmt.Sprintf("max_per_day=%d", r.PerDay))
	}
	return strings.Join(p, " ")
}

// limiter is a sliding-window log of hand-off times. It keeps at most
// max(PerHour, PerDay, 1) stamps younger than a day: bounded memory.
type limiter struct {
	mu      sync.Mutex
	lim     RateLimit
	stamps  []int64 // UnixNano of hand-offs, ascending
	limited bool    // a rate-limit line was logged and not yet cleared
}

func (l *limiter) set(r RateLimit) {
	l.mu.Lock()
	l.lim = r
	l.mu.Unlock()
}

// take reserves a hand-off at now. It returns the stamp to refund if no
// delivery happens, or wait > 0 (how long until one is allowed) and why.
func (l *limiter) take(now time.Time) (stamp int64, wait time.Duration, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := now.UnixNano()
	l.prune(n)
	if l.lim.zero() {
		return n, 0, ""
	}
	if pm := l.lim.PerMinute; pm > 0 && len(l.stamps) > 0 {
		next := l.stamps[len(l.stamps)-1] + int64(time.Minute)/int64(pm)
		if next > n {
			wait, why = time.Duration(next-n), fmt.Sprintf("max_per_minute=%d", pm)
		}
	}
	for _, w := range []struct {
		max    int
		window time.Duration
		name   string
	}{{l.lim.PerHour, time.Hour, "max_per_hour"}, {l.lim.PerDay, 24 * time.Hour, "max_per_day"}} {
		if w.max <= 0 {
			continue
		}
		from := n - int64(w.window)
		i := sort.Search(len(l.stamps), func(i int) bool { return l.stamps[i] > from })
		if inWin := len(l.stamps) - i; inWin >= w.max {
			// Allowed again when the w.max-th most recent stamp leaves the window.
			free := l.stamps[len(l.stamps)-w.max] + int64(w.window)
			if d := time.Duration(free - n); d > wait {
				wait, why = d, fmt.Sprintf("%s=%d", w.name, w.max)
			}
		}
	}
	if wait > 0 {
		return 0, wait, why
	}
	// Keep stamps ascending even if the clock stepped back.
	if k := len(l.stamps); k > 0 && l.stamps[k-1] > n {
		n = l.stamps[k-1]
	}
	l.stamps = append(l.stamps, n)
	return n, 0, ""
}

// refund forgets a reservation whose attempt made no delivery.
func (l *limiter) refund(stamp int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.stamps) - 1; i >= 0; i-- {
		if l.stamps[i] == stamp {
			l.stamps = append(l.stamps[:i], l.stamps[i+1:]...)
			return
		}
	}
}

// prune drops stamps no window can see any more. Caller holds l.mu.
func (l *limiter) prune(n int64) {
	keep := time.Minute
	if l.lim.PerHour > 0 {
		keep = time.Hour
	}
	if l.lim.PerDay > 0 {
		keep = 24 * time.Hour
	}
	from := n - int64(keep)
	i := sort.Search(len(l.stamps), func(i int) bool { return l.stamps[i] > from })
	if i > 0 {
		l.stamps = append(l.stamps[:0], l.stamps[i:]...)
	}
}

// noteLimited reports whether a rate-limit line should be logged now: once
// when mail starts waiting, again only after the backlog drained.
func (l *limiter) noteLimited(on bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := on && !l.limited
	l.limited = on
	return first
}

// SetRateLimit replaces the outbound rate limit (live reload). Hand-offs
// already counted stay counted.
func (q *Queue) SetRateLimit(r RateLimit) {
	q.limit.set(r)
	q.s.kick()
}
