package signer

import (
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// waitGoroutines waits (bounded) until at most n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	for range 200 {
		if runtime.NumGoroutine() <= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
}

// go-msgauth runs one goroutine per key once the header is complete; Close
// ends them when the caller gives up before finish, and finish ends them on
// every path, errors included.
func TestAbortReleasesGoroutines(t *testing.T) {
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	base := runtime.NumGoroutine()
	msg := crlf(baseMsg)

	// Abandoned mid-body: the signers run until Close.
	w, finish, _ := s.Sign("example.com")
	if _, err := w.Write(msg[:len(msg)-5]); err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() < base+2 {
		t.Fatalf("%d goroutines after the header, want %d: signers not started?", runtime.NumGoroutine(), base+2)
	}
	c, ok := w.(io.Closer)
	if !ok {
		t.Fatal("the writer from Sign is not an io.Closer")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
	if _, err := finish(); err == nil {
		t.Error("finish after Close succeeded")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Close before the header is complete, and Close after finish.
	w, _, _ = s.Sign("example.com")
	w.Write([]byte("From: a@example.com\r\n"))
	w.(io.Closer).Close()
	w, finish, _ = s.Sign("example.com")
	w.Write(msg)
	if _, err := finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.(io.Closer).Close(); err != nil {
		t.Errorf("Close after finish: %v", err)
	}
	waitGoroutines(t, base)

	// finish after a failed Write (oversized header) and after many
	// abandoned messages leaves nothing running.
	w, finish, _ = s.Sign("example.com")
	w.Write([]byte("X: " + strings.Repeat("y", MaxHeaderBytes+10)))
	if _, err := finish(); err == nil {
		t.Error("finish after an oversized header succeeded")
	}
	for range 20 {
		w, _, _ := s.Sign("example.com")
		w.Write(msg)
		w.(io.Closer).Close()
	}
	waitGoroutines(t, base)
}
