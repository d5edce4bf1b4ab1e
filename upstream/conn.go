package upstream

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// deadlineConn puts every Read and Write on the TCP connection under a
// deadline. A write gets a fresh one (now + timeout) each time: go-smtp's
// client sets no deadline while the message body is written after Data().
// A read uses readBy when a replyConn above has set it (the deadline of the
// whole reply being read), else now + timeout. Both are capped by until,
// the total deadline of the delivery in progress (zero: none). go-smtp's
// own SetDeadline calls reach this connection too and are overridden by the
// next Read or Write.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	readBy  time.Time // set by replyConn; zero: per read
	until   time.Time // the delivery's total deadline; zero: none
	now     func() time.Time
}

func (c *deadlineConn) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func (c *deadlineConn) cap(t time.Time) time.Time {
	if !c.until.IsZero() && c.until.Before(t) {
		return c.until
	}
	return t
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	by := c.readBy
	if by.IsZero() {
		by = c.clock().Add(c.timeout)
	}
	if err := c.Conn.SetReadDeadline(c.cap(by)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(c.cap(c.clock().Add(c.timeout))); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Reply limits. RFC 5321 §4.5.3.1.5 allows 512 octets per reply line;
// servers exceed it in practice (long EHLO keywords, verbose texts), so a
// line may have up to maxReplyLine. A whole reply, or a pipelined group's
// replies, may have up to maxReplyBytes and maxReplyLines: a server that
// sends more is broken or hostile and would otherwise grow memory without
// bound (textproto gathers every continuation line).
const (
	maxReplyLine  = 2048
	maxReplyBytes = 64 << 10
	maxReplyLines = 1000
)

// errReplyTooLong is returned when a reply exceeds the limits above.
var errReplyTooLong = errors.New("reply exceeds the size limit")

// replyConn sits under the readers of replies (textproto, go-smtp) on the
// cleartext side of TLS. It gives each reply one deadline for all its
// lines, so a server trickling continuation lines cannot hold a delivery
// longer than timeout per reply (a per-read deadline would be refreshed by
// every line), and it bounds each reply's size and line count.
//
// A reply's window opens at the first read after a write (a command sent)
// or after the previous reply's last line (pipelined replies), and closes
// timeout later.
type replyConn struct {
	net.Conn
	dc      *deadlineConn
	timeout time.Duration

	open  bool      // a window is open
	end   time.Time // its deadline
	col   int       // bytes in the current line
	head  [4]byte   // the current line's first four bytes
	bytes int       // in the current reply
	lines int       // completed lines in the current reply
	err   error     // sticky: the connection is unusable
}

func newReplyConn(c net.Conn, dc *deadlineConn, timeout time.Duration) *replyConn {
	return &replyConn{Conn: c, dc: dc, timeout: timeout}
}

func (r *replyConn) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.open {
		r.open, r.end = true, r.dc.clock().Add(r.timeout)
	}
	r.dc.readBy = r.end
	n, err := r.Conn.Read(p)
	r.dc.readBy = time.Time{}
	if e := r.scan(p[:n]); e != nil {
		r.err = e
		return 0, e
	}
	return n, err
}

// scan accounts for the bytes of replies in b.
func (r *replyConn) scan(b []byte) error {
	for _, c := range b {
		r.bytes++
		if c != '\n' {
			if r.col < len(r.head) {
				r.head[r.col] = c
			}
			r.col++
			if r.col > maxReplyLine {
				return fmt.Errorf("%w: a line over %d octets", errReplyTooLong, maxReplyLine)
			}
			continue
		}
		r.lines++
		// "250-text" continues a reply; "250 text" or "250" ends it
		// (RFC 5321 §4.2.1).
		if r.col < 4 || r.head[3] != '-' {
			r.bytes, r.lines = 0, 0
			r.end = r.dc.clock().Add(r.timeout) // the next reply's window
		}
		r.col = 0
		if r.bytes > maxReplyBytes || r.lines > maxReplyLines {
			return fmt.Errorf("%w: over %d octets or %d lines", errReplyTooLong, maxReplyBytes, maxReplyLines)
		}
	}
	if r.bytes > maxReplyBytes {
		return fmt.Errorf("%w: over %d octets or %d lines", errReplyTooLong, maxReplyBytes, maxReplyLines)
	}
	return nil
}

func (r *replyConn) Write(p []byte) (int, error) {
	r.open = false // a command: the reply to it gets a fresh window
	return r.Conn.Write(p)
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
