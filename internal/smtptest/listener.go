package smtptest

import (
	"crypto/tls"
	"net"
	"time"
)

// listener numbers and tracks accepted connections, answers 421 itself when
// Faults.Greeting421 is set (go-smtp always writes its own 220 greeting), and
// wraps connections in TLS for Options.Implicit.
type listener struct {
	net.Listener
	s *Server
}

// trackedConn is an accepted connection with its 1-based number.
type trackedConn struct {
	net.Conn
	id int
	s  *Server
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.live, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		s.mu.Lock()
		s.conns++
		tc := &trackedConn{Conn: raw, id: s.conns, s: s}
		s.live[tc] = struct{}{}
		greet421 := s.faults.Greeting421
		s.mu.Unlock()

		var c net.Conn = tc
		if s.opts.Implicit {
			c = tls.Server(tc, s.tlsConf)
		}
		if greet421 {
			go refuse(c)
			continue
		}
		return c, nil
	}
}

// refuse answers the greeting with 421 (RFC 5321 §3.1) and closes.
func refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("421 4.3.2 smtptest.invalid Service not available, closing transmission channel\r\n"))
}

// connID finds the number of the connection under a go-smtp Conn (which may
// have been wrapped in TLS by STARTTLS or by the implicit listener).
func connID(c net.Conn) int {
	for c != nil {
		switch v := c.(type) {
		case *trackedConn:
			return v.id
		case *tls.Conn:
			c = v.NetConn()
		default:
			return 0
		}
	}
	return 0
}
