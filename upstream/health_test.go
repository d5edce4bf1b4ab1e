package upstream

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// silentListener accepts connections and never says a word; it counts
// them.
func silentListener(t *testing.T) (addr string, conns func() int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(held) }
}

// TestSilentPrimaryFailsOver: a primary that accepts and stays silent
// costs one timeout; while its backoff runs the next messages go straight
// to the fallback (issue 20 item 7). Before the fix every message waited
// the full timeout on the primary first.
func TestSilentPrimaryFailsOver(t *testing.T) {
	primary, conns := silentListener(t)
	good := newFakeMTA(t, fakeOpts{pipelining: true})
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, logs := good.client(t, func(cfg *Config) {
		cfg.Address, cfg.Fallback = primary, []string{good.Addr()}
		cfg.Timeout = 300 * time.Millisecond
		cfg.Clock = clock.Now
	})
	for i := range 3 {
		out, err := c.Deliver(context.Background(), delivery("m", "b@example.net"))
		if err != nil || out.Rcpts[0] != nil {
			t.Fatalf("delivery %d: %v %v", i, out.Rcpts, err)
		}
	}
	if n := conns(); n != 1 {
		t.Errorf("the silent primary got %d connections for 3 messages, want 1", n)
	}
	if len(good.Queued()) != 3 {
		t.Errorf("fallback got %d messages", len(good.Queued()))
	}
	clock.Add(relayBackoffMin)
	c.Deliver(context.Background(), delivery("m", "b@example.net")) // backoff over: the primary is tried again
	if n := conns(); n != 2 {
		t.Errorf("after the backoff the primary got %d connections in all, want 2", n)
	}
	_ = logs
}
