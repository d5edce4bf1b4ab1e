package upstream

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Config.Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestAuthRejectedBackoff: a smarthost answering 535 sees one AUTH per
// backoff period however many messages are queued, the rejection is logged
// once, every message is deferred (an *Error, never a recipient failure),
// and after the backoff one probe logs in again (issue 20 item 5). Before
// the fix 10 messages made 10 failed logins.
func TestAuthRejectedBackoff(t *testing.T) {
	f := newFakeMTA(t, fakeOpts{auth: true, authReply: func(n int) string {
		if n <= 2 {
			return "535 5.7.8 Error: authentication failed"
		}
		return ""
	}})
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, logs := f.client(t, func(cfg *Config) { cfg.Clock = clock.Now; cfg.MaxConns = 4 })

	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Deliver(context.Background(), delivery("m", "b@example.net"))
			if len(out.Rcpts) != 0 {
				t.Errorf("outcome %v for a login failure", out.Rcpts)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if e := wantErr(t, err, StageAuth); !e.Temporary || e.Code != 535 {
			t.Fatalf("err = %v", e)
		}
	}
	if n := f.Auths(); n != 1 {
		t.Fatalf("%d AUTH attempts for 10 messages, want 1", n)
	}
	if n := strings.Count(logs.String(), "no new login to it until"); n != 1 {
		t.Errorf("rejection logged %d times:\n%s", n, logs)
	}
	var e *Error
	if errors.As(errs[0], &e); !e.CredentialsRejected() && !errors.Is(errs[0], ErrAuthBackoff) {
		t.Errorf("neither the rejection nor the backoff: %v", errs[0])
	}

	clock.Add(5*time.Minute + time.Second) // first backoff over: one probe, rejected again
	for range 5 {
		c.Deliver(context.Background(), delivery("m", "b@example.net"))
	}
	if n := f.Auths(); n != 2 {
		t.Fatalf("%d AUTH attempts after one backoff, want 2", n)
	}
	clock.Add(5*time.Minute + time.Second) // the backoff doubled: still closed
	if _, err := c.Deliver(context.Background(), delivery("m", "b@example.net")); !errors.Is(err, ErrAuthBackoff) || f.Auths() != 2 {
		t.Fatalf("err %v, %d AUTHs: the doubled backoff was not kept", err, f.Auths())
	}
	clock.Add(5 * time.Minute) // past it: the probe logs in and mail flows
	if out, err := c.Deliver(context.Background(), delivery("m", "b@example.net")); err != nil || out.Rcpts[0] != nil {
		t.Fatalf("after the backoff: %v %v", out.Rcpts, err)
	}
	if n := f.Auths(); n != 3 {
		t.Errorf("%d AUTH attempts, want 3", n)
	}
	if !strings.Contains(logs.String(), "accepted the credentials again") {
		t.Error("recovery not logged")
	}
}
