package smtpd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"
)

// A client trickling DATA (one byte well within every idle timeout) is cut
// once it falls below MinDataRate; the idle deadline alone kept it forever.
func TestSlowDataCut(t *testing.T) {
	e := serve(t, Relay, func(c *Config) { c.IdleTimeout = time.Second; c.MinDataRate = 1000 })
	conn, br, _ := rawEHLO(t, e.addr)
	for _, cmd := range []string{"MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "DATA"} {
		fmt.Fprintf(conn, "%s\r\n", cmd)
		readReply(t, conn, br)
	}
	cut := false
	for i := 0; i < 40 && !cut; i++ { // 12 s at most
		time.Sleep(300 * time.Millisecond)
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			cut = true
		}
		conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := br.Peek(1); err == nil {
			cut = true // a reply (421/451) in the middle of DATA
		}
	}
	if !cut {
		t.Errorf("a client sending DATA at ~3 bytes/s stayed connected for 12s")
	}
	if e.in.count() != 0 {
		t.Errorf("a cut message was queued")
	}
}

// SessionTimeout ends a session that keeps itself alive with NOOPs.
func TestSessionTimeout(t *testing.T) {
	e := serve(t, Relay, func(c *Config) { c.IdleTimeout = time.Second; c.SessionTimeout = 2 * time.Second })
	conn, br, _ := rawEHLO(t, e.addr)
	for i := 0; i < 30; i++ { // 9 s at most
		time.Sleep(300 * time.Millisecond)
		fmt.Fprintf(conn, "NOOP\r\n")
		if n, _ := readReply(t, conn, br); n != 250 {
			return // 421 or closed
		}
	}
	t.Errorf("a session of NOOPs lasted 9s with SessionTimeout 2s")
}

// Half-open implicit-TLS handshakes are dropped after HandshakeTimeout, so
// they hold the port's connection slots only that long.
func TestHandshakeTimeout(t *testing.T) {
	e := serve(t, Submissions, func(c *Config) {
		c.IdleTimeout = time.Minute
		c.HandshakeTimeout = time.Second
		c.MaxConns = 20
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	var half []net.Conn
	for i := 0; i < 20; i++ {
		c, err := d.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		half = append(half, c)
	}
	ok := false
	for i := 0; i < 50 && !ok; i++ { // 10 s at most
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr, e.client)
		if err == nil {
			if n, _ := readReply(t, c, bufio.NewReader(c)); n == 220 {
				ok = true
			}
			c.Close()
		}
		if !ok {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatalf("20 half-open handshakes kept the implicit-TLS port full for 10s (HandshakeTimeout 1s)")
	}
	half[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := half[0].Read(make([]byte, 1)); err == nil {
		t.Errorf("a half-open handshake got data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("a half-open handshake is still open after 10s")
	}
}
