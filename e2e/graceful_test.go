package e2e

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// SIGTERM stops accepting but lets a session in the middle of DATA finish:
// its message gets 250, and it is delivered (after the restart here, since
// the smarthost is down while relayd stops).
func TestGracefulStopFinishesSessionInFlight(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	sh.Stop()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	r := start(t, dir, cfg)

	rc := dialRaw(t, r.addr)
	for _, c := range []struct {
		cmd  string
		code int
	}{{"EHLO app.test", 250}, {"MAIL FROM:<app@example.com>", 250}, {"RCPT TO:<bob@example.org>", 250}, {"DATA", 354}} {
		if code, text := rc.cmd(c.cmd); code != c.code {
			t.Fatalf("%s: %d %s", c.cmd, code, text)
		}
	}
	fmt.Fprintf(rc.c, "Subject: in flight\r\n\r\nfirst half\r\n")
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.waitLog(t, `stopping: no new connections`, 10*time.Second)
	// New connections are refused now.
	if c, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted after SIGTERM")
	}
	time.Sleep(300 * time.Millisecond)
	if code, text := rc.cmd("second half\r\n."); code != 250 {
		t.Fatalf("message in flight at SIGTERM: %d %s", code, text)
	}
	rc.cmd("QUIT")
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("relayd did not exit after the session ended")
	}
	sh.Start()
	start(t, dir, cfg)
	m := sh.WaitMessages(t, 1, 30*time.Second)[0]
	if want := "\r\n\r\nfirst half\r\nsecond half\r\n"; string(m.Data[len(m.Data)-len(want):]) != want {
		t.Errorf("body %q", m.Data)
	}
}
