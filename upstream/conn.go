package upstream

import (
	"net"
	"time"
)

// deadlineConn sets a fresh deadline before every Read and Write, so that an
// idle peer can stall no single operation longer than timeout. go-smtp's
// client sets no deadline while the message body is written after Data(),
// and its own deadlines are minutes long; this wrapper overrides both.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// greetedConn replays bytes before reading from Conn. The session reads the
// greeting itself (and, with STARTTLS, the pre-TLS exchange), then hands the
// connection to smtp.NewClient, which insists on reading a 220 greeting
// first: pending holds a synthetic "220" line for it, followed by anything
// the server had already sent that the session's reader buffered.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
