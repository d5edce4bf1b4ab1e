package smtpd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"relayd/smtpd/readpath"
)

// idleConn refreshes its deadline before every Read and Write, so a client
// is dropped after IdleTimeout of silence, while a large message sent at
// any sane speed is never cut off. go-smtp's own ReadTimeout is set once per
// command line and not refreshed during DATA, which cuts slow large
// uploads; this wrapper replaces it.
//
// It also holds replies until the server is about to wait for the client
// (a read of the socket) or closes: go-smtp flushes every line, so a
// 10-line EHLO reply was 10 system calls and 10 wakeups of the client.
// That is RFC 2920 §3's rule for a server (batch replies, flush before
// blocking on input), applied to every connection.
type idleConn struct {
	net.Conn
	idle    time.Duration
	release func()
	once    sync.Once
	uid     int // peer uid on a Unix socket, -1 otherwise

	// go-smtp reads through the tap (readpath: the DATA fast path); only
	// the session's goroutine reads.
	tap *readpath.Tap

	hangUp atomic.Bool // end the session at the next read, after sending the replies
	dl     deadlines   // hard limits besides idle (deadline.go)

	// Prompt mode (readpath.Waker); session goroutine only.
	prompt      time.Duration // > 0: reads wake up this often while waiting
	softExpired bool          // the last read ended at a prompt wake-up
	waitFrom    time.Time     // when the current wait began (prompt mode)

	wmu     sync.Mutex // Close may come from another goroutine
	closing atomic.Bool
	wbuf    []byte // replies not sent yet
	werr    error  // the first failed send
}

// maxHeld bounds the replies held back; more is sent at once.
const maxHeld = 16 << 10

// closeFlush bounds sending the held replies at Close.
const closeFlush = 2 * time.Second

func newIdleConn(c net.Conn, idle time.Duration, uid int, release func()) *idleConn {
	return newIdleConnLimit(c, idle, uid, release, 0)
}

// newIdleConnLimit is newIdleConn with the line limit go-smtp applies to
// DATA content (readpath.NewTap).
func newIdleConnLimit(c net.Conn, idle time.Duration, uid int, release func(), lineLimit int) *idleConn {
	ic := &idleConn{Conn: c, idle: idle, uid: uid, release: release}
	ic.tap = readpath.NewTap(rawReader{ic}, lineLimit)
	return ic
}

// rawReader is the socket under the tap.
type rawReader struct{ c *idleConn }

func (r rawReader) Read(p []byte) (int, error) { return r.c.readRaw(p) }

// Prompt implements readpath.Waker: reads wake up every d while waiting
// (0: off), the idle deadline counted from when the wait began.
func (c *idleConn) Prompt(d time.Duration) {
	c.prompt, c.softExpired, c.waitFrom = d, false, time.Time{}
}

// WokeUp implements readpath.Waker.
func (c *idleConn) WokeUp() bool {
	w := c.softExpired
	c.softExpired = false
	return w
}

// ReadTap implements readpath.Tapped.
func (c *idleConn) ReadTap() *readpath.Tap { return c.tap }

// Read is go-smtp's source, through the tap.
func (c *idleConn) Read(p []byte) (int, error) { return c.tap.Read(p) }

// readRaw reads the socket under the idle deadline, after sending the
// held replies: the client may be waiting for them.
func (c *idleConn) readRaw(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.hangUp.Load() {
		return 0, io.EOF
	}
	now := time.Now()
	c.dl.excuse(now)
	defer func() { c.dl.lastRead = time.Now() }()
	if c.prompt <= 0 {
		c.Conn.SetReadDeadline(c.dl.at(now, c.idle))
		n, err := c.Conn.Read(p)
		c.dl.credit(n)
		return n, err
	}
	// Prompt mode (readpath.Waker): wake up every c.prompt while waiting,
	// the idle deadline counted from when the wait began.
	from := now
	if !c.waitFrom.IsZero() {
		from = c.waitFrom
	}
	d, soft := c.dl.at(from, c.idle), false
	if s := now.Add(c.prompt); d.IsZero() || s.Before(d) {
		d, soft = s, true
	}
	c.Conn.SetReadDeadline(d)
	n, err := c.Conn.Read(p)
	c.dl.credit(n)
	var ne net.Error
	if n == 0 && soft && errors.As(err, &ne) && ne.Timeout() {
		c.softExpired = true
		if c.waitFrom.IsZero() {
			c.waitFrom = now
		}
	} else {
		c.waitFrom = time.Time{}
	}
	return n, err
}

// Write holds p until the next read of the socket, Close, or maxHeld.
func (c *idleConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if len(c.wbuf)+len(p) > maxHeld {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxHeld {
			return c.send(p)
		}
	}
	c.wbuf = append(c.wbuf, p...)
	return len(p), nil
}

// flush sends the held replies.
func (c *idleConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *idleConn) flushLocked() error {
	if c.werr != nil || len(c.wbuf) == 0 {
		return c.werr
	}
	_, err := c.send(c.wbuf)
	if cap(c.wbuf) > 4<<10 {
		c.wbuf = nil // a burst of replies does not keep its buffer
	} else {
		c.wbuf = c.wbuf[:0]
	}
	return err
}

// send writes to the socket under the idle deadline (closeFlush once
// Close has begun); c.wmu is held.
func (c *idleConn) send(p []byte) (int, error) {
	if c.closing.Load() {
		c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
	} else {
		c.Conn.SetWriteDeadline(c.dl.at(time.Now(), c.idle))
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

func (c *idleConn) Close() error {
	// The last reply (221, 421) still goes out, but a client that does not
	// read cannot hold Close (a shutdown) for the idle timeout: a send
	// blocked on it now (holding wmu) fails at once, a later one has
	// closeFlush.
	c.closing.Store(true)
	for !c.wmu.TryLock() {
		c.Conn.SetWriteDeadline(time.Now())
		time.Sleep(time.Millisecond)
	}
	if c.werr == nil && len(c.wbuf) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
		c.Conn.Write(c.wbuf)
		c.wbuf = nil
	}
	c.wmu.Unlock()
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return c.Conn.Close()
}

// limitListener applies ConnLimits. A client over a limit gets
// "421 4.7.0" and is closed before any session is created (RFC 5321 §3.8
// allows 421 at the greeting).
type limitListener struct {
	net.Listener
	idle      time.Duration
	session   time.Duration // whole-session limit
	handshake time.Duration // until the session starts (implicit TLS); 0: none
	minRate   int64         // DATA bytes per second
	lineLimit int           // go-smtp's MaxLineLength, for the DATA fast path
	limits    *ConnLimits
	peerUID   func(net.Conn) int
	onRefused func(who string, reason string)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		k := client{ip: remoteIP(c), uid: -1}
		if l.peerUID != nil {
			k.uid = l.peerUID(c)
		}
		if reason := l.limits.acquire(k); reason != "" {
			if l.onRefused != nil {
				l.onRefused(k.String(), reason)
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "421 4.7.0 %s, try again later\r\n", reason)
			c.Close()
			continue
		}
		ic := newIdleConnLimit(c, l.idle, k.uid, func() { l.limits.release(k) }, l.lineLimit)
		now := time.Now()
		if l.session > 0 {
			ic.dl.session.Store(now.Add(l.session).UnixNano())
		}
		if l.handshake > 0 {
			ic.dl.handshake.Store(now.Add(l.handshake).UnixNano())
		}
		ic.dl.minRate = l.minRate
		return ic, nil
	}
}

// remoteIP returns the client's IP, or the zero Addr for a Unix socket.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
