package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Whole-reply deadlines, the total deadline of a delivery and reply size
// limits (issue 20 item 3). Each test bounds its server, so on code without
// the limit it fails instead of hanging.

// TestSlowContinuationLines: a smarthost that sends one continuation line
// of its reply to MAIL every 20 ms, for up to 10 s, is cut off after one
// Timeout: the deadline covers the whole reply, not each read (before the
// fix every line refreshed it and the delivery took the full 10 s, then
// succeeded).
func TestSlowContinuationLines(t *testing.T) {
	f := newFakeMTA(t, fakeOpts{raw: func(conn net.Conn, line string) bool {
		if !strings.HasPrefix(strings.ToUpper(line), "MAIL") {
			return false
		}
		for i := 0; i < 500; i++ {
			if _, err := io.WriteString(conn, "250-still thinking\r\n"); err != nil {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		io.WriteString(conn, "250 ok\r\n")
		return true
	}})
	c, _ := f.client(t, func(cfg *Config) { cfg.Timeout = 500 * time.Millisecond })
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageMail)
	if !e.Timeout() || !e.Temporary {
		t.Fatalf("err = %v, want a temporary timeout", e)
	}
	if !strings.Contains(e.Hint, "counted as a smarthost failure") {
		t.Errorf("hint = %q", e.Hint)
	}
}

// TestEndlessReply: a reply that never ends, sent as fast as the socket
// takes it, is refused after maxReplyBytes: memory stays bounded and the
// connection is closed (before the fix textproto gathered all 64 MiB).
func TestEndlessReply(t *testing.T) {
	var sent atomic.Int64
	f := newFakeMTA(t, fakeOpts{raw: func(conn net.Conn, line string) bool {
		if !strings.HasPrefix(strings.ToUpper(line), "MAIL") {
			return false
		}
		chunk := strings.Repeat("250-"+strings.Repeat("x", 90)+"\r\n", 100)
		for sent.Load() < 64<<20 {
			n, err := io.WriteString(conn, chunk)
			sent.Add(int64(n))
			if err != nil {
				return true
			}
		}
		io.WriteString(conn, "250 ok\r\n")
		return true
	}})
	c, _ := f.client(t, nil)
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	wantErr(t, err, StageMail)
	if !errors.Is(err, errReplyTooLong) {
		t.Fatalf("err = %v, want errReplyTooLong", err)
	}
	c.Close()
	// The server's writes fail once the client has closed; what it got
	// rid of before that is the socket buffers' worth, not 64 MiB.
	deadline := time.Now().Add(10 * time.Second)
	for before := int64(-1); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		now := sent.Load()
		if now == before {
			break
		}
		before = now
	}
	if n := sent.Load(); n >= 32<<20 {
		t.Errorf("server sent %d bytes before the client gave up", n)
	}
}

// TestLongReplyLine: one reply line far over RFC 5321's 512 octets (and
// maxReplyLine) is refused.
func TestLongReplyLine(t *testing.T) {
	f := newFakeMTA(t, fakeOpts{mail: func(int, string) string { return "250 " + strings.Repeat("y", 3*maxReplyLine) }})
	c, _ := f.client(t, nil)
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	wantErr(t, err, StageMail)
}

// TestLenientReplyLine: a reply line over 512 octets but within
// maxReplyLine, and a long multi-line reply, still work.
func TestLenientReplyLine(t *testing.T) {
	f := newFakeMTA(t, fakeOpts{mail: func(int, string) string {
		return strings.Repeat("250-"+strings.Repeat("z", 200)+"\r\n", 100) + "250 " + strings.Repeat("z", 1500)
	}})
	c, _ := f.client(t, nil)
	if out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); err != nil || out.Rcpts[0] != nil {
		t.Fatalf("%v %v", out.Rcpts, err)
	}
}

// TestTotalDeliveryDeadline: every reply within Timeout, but the delivery
// as a whole over its total deadline (3*Timeout for a small message): it
// ends at that deadline (before the fix it took 20 replies of 300 ms and
// succeeded).
func TestTotalDeliveryDeadline(t *testing.T) {
	f := newFakeMTA(t, fakeOpts{rcpt: func(int, string) string {
		time.Sleep(300 * time.Millisecond)
		return ""
	}})
	c, _ := f.client(t, func(cfg *Config) { cfg.Timeout = 400 * time.Millisecond; cfg.MinDataRate = 1 << 30 })
	var rcpts []string
	for i := 0; i < 20; i++ {
		rcpts = append(rcpts, "r"+string(rune('a'+i))+"@example.net")
	}
	start := time.Now()
	_, err := c.Deliver(context.Background(), delivery("m1", rcpts...))
	t.Logf("took %v: %v", time.Since(start), err)
	e := wantErr(t, err, StageRcpt)
	if !e.Timeout() {
		t.Fatalf("err = %v, want a timeout", e)
	}
	if n := f.count("RCPT"); n >= 20 {
		t.Errorf("all %d RCPTs were sent", n)
	}
}

// TestSilentServerHint: a server that accepts and says nothing is not told
// to try port-465 settings (issue 20 item 7).
func TestSilentServerHint(t *testing.T) {
	f := newFakeMTA(t, fakeOpts{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	c, _ := f.client(t, func(cfg *Config) { cfg.Address = l.Addr().String(); cfg.Timeout = 300 * time.Millisecond })
	_, err = c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageGreeting)
	if strings.Contains(e.Hint, "implicit") || !strings.Contains(e.Hint, "no greeting") {
		t.Fatalf("hint = %q", e.Hint)
	}
}
