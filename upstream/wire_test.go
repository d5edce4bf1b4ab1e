package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"relayd/internal/smtptest"
	"relayd/internal/tlsmode"
)

func TestLoginMechanism(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{RequireTLS: true, AuthMechs: []string{"LOGIN"}, Users: map[string]string{testUser: testPass}})
	c, _ := newClient(t, s, nil)
	if _, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); err != nil {
		t.Fatal(err)
	}
	if s.Logins() != 1 {
		t.Fatalf("Logins = %d", s.Logins())
	}
}

func TestImplicitAgainstSTARTTLSPort(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.TLS = tlsmode.Implicit })
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	if e := wantErr(t, err, StageTLS); !strings.Contains(e.Hint, "starttls") {
		t.Fatalf("hint = %q", e.Hint)
	}
}

// TestBodyWriteDeadline proves the body write after DATA is under the
// deadline: a peer that answers 354 and then stops reading must not hang
// the delivery.
func TestBodyWriteDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		io.WriteString(conn, "220 fake ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.Fields(line)[0]); cmd {
			case "EHLO":
				io.WriteString(conn, "250-fake\r\n250 8BITMIME\r\n")
			case "DATA":
				io.WriteString(conn, "354 go ahead\r\n")
				<-done // and never read again
				return
			default:
				io.WriteString(conn, "250 ok\r\n")
			}
		}
	}()
	c, err := New(Config{Address: l.Addr().String(), TLS: tlsmode.None, Hostname: testHost, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d := delivery("big", "b@example.net")
	big := strings.Repeat(strings.Repeat("x", 998)+"\r\n", 32*1024) // 32 MiB, far beyond socket buffers
	d.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(big)), nil }
	start := time.Now()
	_, err = c.Deliver(context.Background(), d)
	if e := wantErr(t, err, StageData); !e.Timeout() {
		t.Fatalf("err = %v, want a write timeout", e)
	}
	if dur := time.Since(start); dur > 15*time.Second {
		t.Fatalf("took %v", dur)
	}
}

func TestUTF8WithoutServerSupport(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, nil)
	d := delivery("m1", "b@example.net")
	d.UTF8 = true
	if out, err := c.Deliver(context.Background(), d); err != nil || out.Rcpts[0] != nil {
		t.Fatalf("ASCII envelope: %v %v", out.Rcpts, err)
	}
	d = delivery("m2", "jos\u00e9@example.net")
	d.UTF8 = true
	out, err := c.Deliver(context.Background(), d)
	if err != nil || out.Rcpts[0] == nil || out.Rcpts[0].Code != 553 {
		t.Fatalf("non-ASCII envelope: %v %v", out.Rcpts, err)
	}

	u := smtptest.New(t, smtptest.Options{RequireTLS: true, SMTPUTF8: true, Users: map[string]string{testUser: testPass}})
	cu, _ := newClient(t, u, nil)
	if out, err := cu.Deliver(context.Background(), d); err != nil || out.Rcpts[0] != nil {
		t.Fatalf("SMTPUTF8 server: %v %v", out.Rcpts, err)
	}
	if m := u.WaitMessages(t, 1, 5*time.Second)[0]; !m.MailOpts.UTF8 {
		t.Fatal("SMTPUTF8 not passed")
	}
}
