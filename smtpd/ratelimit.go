package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// ipLimiter is a token bucket per client IP: perMinute messages per
// minute, with a burst of the same size. Idle buckets are swept, so memory
// follows the number of recently active clients, not their history.
type ipLimiter struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[netip.Addr]*bucket
	calls   int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newIPLimiter(now func() time.Time) *ipLimiter {
	if now == nil {
		now = time.Now
	}
	return &ipLimiter{now: now, buckets: map[netip.Addr]*bucket{}}
}

// allow takes one token for ip; perMinute <= 0 always allows.
func (l *ipLimiter) allow(ip netip.Addr, perMinute int) bool {
	if perMinute <= 0 || !ip.IsValid() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	rate := float64(perMinute) / float64(time.Minute)
	if l.calls++; l.calls%1024 == 0 {
		l.sweep(now, rate, perMinute)
	}
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{tokens: float64(perMinute), last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(float64(perMinute), b.tokens+rate*float64(now.Sub(b.last)))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that have refilled completely: they carry no state.
func (l *ipLimiter) sweep(now time.Time, rate float64, perMinute int) {
	for ip, b := range l.buckets {
		if b.tokens+rate*float64(now.Sub(b.last)) >= float64(perMinute) {
			delete(l.buckets, ip)
		}
	}
}
