package queue

import (
	"strings"
	"testing"
	"time"
)

// settleCount waits for the deliverer to reach want calls, then gives the
// scheduler a moment to prove it makes no more.
func settleCount(t *testing.T, h *harness, want int) {
	t.Helper()
	waitFor(t, "deliveries", func() bool { return h.del.count() >= want })
	time.Sleep(150 * time.Millisecond)
	if got := h.del.count(); got != want {
		t.Fatalf("%d deliveries, want %d", got, want)
	}
}

func TestRateLimitPerMinutePacesWithoutBurst(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RateLimit = RateLimit{PerMinute: 60} })
	var ids []string
	for range 4 {
		ids = append(ids, h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP))
	}
	h.run()
	settleCount(t, h, 1)
	h.advance(500 * time.Millisecond)
	settleCount(t, h, 1) // 60/min is one per second: no burst
	h.advance(500 * time.Millisecond)
	settleCount(t, h, 2)
	h.advance(time.Second)
	settleCount(t, h, 3)
	// A waiting message burned no attempt and was not bounced.
	waiting := 0
	for _, id := range ids {
		if a := h.attempts(id); a == 0 {
			waiting++
		} else if a != 1 && a != -1 {
			t.Errorf("%s: %d attempts", id, a)
		}
	}
	if waiting != 1 {
		t.Errorf("%d messages waiting with 0 attempts, want 1", waiting)
	}
	if n := h.logs.Count("outbound rate limit reached"); n != 1 {
		t.Errorf("rate-limit line logged %d times, want once per backlog:\n%s", n, h.logs)
	}
	if !strings.Contains(h.logs.String(), "limit=\"max_per_minute=60\"") {
		t.Errorf("log does not name the limit:\n%s", h.logs)
	}
	h.advance(time.Second)
	waitFor(t, "queue drained", func() bool { return h.q.Len() == 0 })
	if len(h.notif.list()) != 0 {
		t.Errorf("notices for rate-limited mail: %+v", h.notif.list())
	}
}

func TestRateLimitPerHourAllowsBurstThenWaitsForWindow(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RateLimit = RateLimit{PerHour: 3} })
	for range 5 {
		h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	}
	h.run()
	settleCount(t, h, 3)
	h.advance(59 * time.Minute)
	settleCount(t, h, 3)
	h.advance(2 * time.Minute) // the first three leave the window
	settleCount(t, h, 5)
}

func TestRateLimitSetAtRuntime(t *testing.T) {
	h := newHarness(t, nil)
	h.run()
	h.q.SetRateLimit(RateLimit{PerDay: 2})
	for range 3 {
		h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	}
	settleCount(t, h, 2)
	h.q.SetRateLimit(RateLimit{})
	settleCount(t, h, 3)
}

func TestLimiterRefundAndWait(t *testing.T) {
	var l limiter
	l.set(RateLimit{PerMinute: 2, PerDay: 2})
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s1, w, _ := l.take(now)
	if w != 0 {
		t.Fatalf("first take waits %v", w)
	}
	if _, w, why := l.take(now.Add(10 * time.Second)); w != 20*time.Second || why != "max_per_minute=2" {
		t.Errorf("pacing wait %v (%s), want 20s", w, why)
	}
	l.refund(s1) // the attempt made no delivery
	if _, w, _ := l.take(now.Add(10 * time.Second)); w != 0 {
		t.Errorf("after refund: wait %v", w)
	}
	if _, w, _ := l.take(now.Add(50 * time.Second)); w != 0 {
		t.Errorf("second of the day: wait %v", w)
	}
	_, w, why := l.take(now.Add(2 * time.Minute))
	if want := 24*time.Hour + 10*time.Second - 2*time.Minute; w != want || why != "max_per_day=2" {
		t.Errorf("daily cap wait %v (%s), want %v", w, why, want)
	}
}

func TestStatsOldestFromIDs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Deliverer = nil })
	if st := h.q.Stats(); st.Messages != 0 || !st.Oldest.IsZero() {
		t.Errorf("empty queue stats %+v", st)
	}
	first := h.clock.Now()
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	h.clock.Advance(time.Hour)
	h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	if err := h.q.Hold(id); err != nil {
		t.Fatal(err)
	}
	st := h.q.Stats()
	if st.Messages != 2 || st.Held != 1 || !st.Oldest.Equal(first.Truncate(time.Microsecond)) {
		t.Errorf("stats %+v, want 2 messages, 1 held, oldest %v", st, first)
	}
}
