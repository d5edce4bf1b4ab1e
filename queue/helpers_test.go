package queue

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// fakeClock is an injected clock that only moves when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) Count(s string) int { return strings.Count(l.String(), s) }

// fakeDeliverer answers with fn and records every delivery.
type fakeDeliverer struct {
	mu       sync.Mutex
	fn       func(d *Delivery) (Outcome, error)
	calls    []*Delivery
	inflight atomic.Int32
	maxIn    atomic.Int32
	hold     time.Duration // time spent inside Deliver, to expose overlap
}

func (f *fakeDeliverer) Deliver(ctx context.Context, d *Delivery) (Outcome, error) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.maxIn.Load()
		if n <= m || f.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	if f.hold > 0 {
		time.Sleep(f.hold)
	}
	f.mu.Lock()
	f.calls = append(f.calls, d)
	fn := f.fn
	f.mu.Unlock()
	return fn(d)
}

func (f *fakeDeliverer) set(fn func(d *Delivery) (Outcome, error)) {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
}

func (f *fakeDeliverer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeDeliverer) countID(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.ID == id {
			n++
		}
	}
	return n
}

// allOK accepts every recipient.
func allOK(d *Delivery) (Outcome, error) {
	return Outcome{Relay: "smart.example[192.0.2.1]:587", Rcpts: make([]*smtp.SMTPError, len(d.Rcpts))}, nil
}

// replyAll answers every recipient with the same reply.
func replyAll(code int, ec smtp.EnhancedCode, msg string) func(d *Delivery) (Outcome, error) {
	return func(d *Delivery) (Outcome, error) {
		out := Outcome{Relay: "smart.example[192.0.2.1]:587"}
		for range d.Rcpts {
			out.Rcpts = append(out.Rcpts, &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg})
		}
		return out, nil
	}
}

// fakeNotifier records notices; err, when set, makes Notify fail.
type fakeNotifier struct {
	mu      sync.Mutex
	notices []Notice
	fails   int // fail this many calls first
}

func (n *fakeNotifier) Notify(ctx context.Context, no Notice) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fails > 0 {
		n.fails--
		return context.DeadlineExceeded
	}
	n.notices = append(n.notices, no)
	return nil
}

func (n *fakeNotifier) list() []Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Notice(nil), n.notices...)
}

func (n *fakeNotifier) kinds(k NoticeKind) []Notice {
	var out []Notice
	for _, no := range n.list() {
		if no.Kind == k {
			out = append(out, no)
		}
	}
	return out
}

type harness struct {
	t     *testing.T
	q     *Queue
	clock *fakeClock
	logs  *logBuf
	del   *fakeDeliverer
	notif *fakeNotifier
	stop  func()
}

// newHarness opens a queue in a temp dir with a fake clock, a fixed jitter
// factor of 1.0, a fake deliverer (accepting all) and a fake notifier.
func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newClock(), logs: &logBuf{},
		del: &fakeDeliverer{fn: allOK}, notif: &fakeNotifier{}}
	cfg := Config{
		Dir: t.TempDir(), MinBackoff: 10 * time.Minute, MaxBackoff: time.Hour,
		MaxAge: 5 * 24 * time.Hour, Concurrency: 4, Deliverer: h.del, Notifier: h.notif,
		Clock: h.clock.Now, Rand: func() float64 { return 0.5 },
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.q = q
	t.Cleanup(func() {
		h.stopRun()
		q.Close()
	})
	return h
}

// inBothFlushModes runs fn as a subtest per flush mode (one syncfs per
// batch; per-file fdatasync), each with a fresh harness (mod as for
// newHarness).
func inBothFlushModes(t *testing.T, mod func(*Config), fn func(t *testing.T, h *harness)) {
	for _, syncfs := range []bool{true, false} {
		t.Run(fmt.Sprintf("syncfs=%v", syncfs), func(t *testing.T) {
			h := newHarness(t, mod)
			h.q.setFlusher(syncfsMode(syncfs))
			fn(t, h)
		})
	}
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.q.Run(ctx) }()
	h.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.t.Error("Run did not return after cancel")
		}
	}
}

func (h *harness) stopRun() {
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// advance moves the fake clock and wakes the scheduler.
func (h *harness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.q.s.kick()
}

func rcpts(addrs ...string) []Recipient {
	var r []Recipient
	for _, a := range addrs {
		r = append(r, Recipient{Addr: a})
	}
	return r
}

// commit queues a message with body "Subject: x\r\n\r\nbody\r\n".
func (h *harness) commit(env Envelope, origin Origin) string {
	h.t.Helper()
	return commitBody(h.t, h.q, env, []byte("Received: by test\r\n"), []byte("Subject: x\r\n\r\nbody\r\n"), origin)
}

func commitBody(t testing.TB, q *Queue, env Envelope, prefix, body []byte, origin Origin) string {
	t.Helper()
	d, err := q.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(context.Background(), env, prefix, origin); err != nil {
		t.Fatal(err)
	}
	return d.ID()
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (h *harness) meta(id string) *Meta {
	h.t.Helper()
	m, err := h.q.Get(id)
	if err != nil {
		h.t.Fatalf("Get(%s): %v", id, err)
	}
	return m
}

// attempts returns the persisted attempt count, -1 when gone.
func (h *harness) attempts(id string) int {
	m, err := h.q.Get(id)
	if err != nil {
		return -1
	}
	return m.Attempts
}

// idle waits until no attempt is in flight and nothing due is pending.
func (h *harness) idle() {
	h.t.Helper()
	waitFor(h.t, "scheduler idle", func() bool {
		s := &h.q.s
		s.mu.Lock()
		defer s.mu.Unlock()
		now := h.clock.Now().UnixNano()
		if s.inflight != 0 {
			return false
		}
		for _, l := range s.allLanes() {
			due := len(l.h) > 0 && l.h[0].next <= now
			backoff := l.down && now < l.downUntil // due, but the transport waits
			if due && !backoff && l != s.mixed {
				return false
			}
		}
		return true
	})
}

func slogTo(l *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncfsMode is the flush mode a test's syncfs flag names.
func syncfsMode(syncfs bool) string {
	if syncfs {
		return FlushSyncfs
	}
	return FlushFdatasync
}
