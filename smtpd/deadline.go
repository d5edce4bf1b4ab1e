package smtpd

import (
	"sync/atomic"
	"time"
)

// Deadlines beyond the idle timeout. The idle deadline alone is refreshed
// by every read, so a client sending one byte per idle period held a
// session (and its connection slot) forever, and a client that never
// finished a TLS handshake held its slot for the whole idle timeout.
//
//   - Whole session: a connection ends SessionTimeout after it was
//     accepted, whatever it does (a cut DATA never got its 250: nothing
//     accepted is lost; the client retries).
//   - Handshake: before the session starts (the implicit-TLS handshake on
//     the submissions port), HandshakeTimeout.
//   - DATA: the body must arrive at MinDataRate on average, after a grace
//     of one idle timeout: the deadline starts at the idle timeout and each
//     byte received extends it by 1/MinDataRate seconds (Postfix's
//     smtpd_timeout with smtpd_min_data_rate), so the deadline scales with
//     the message's size and a large message at any sane speed is never cut.
//     Only time spent waiting for the client counts: the time between two
//     reads (the intake busy, say on a slow disk) is added back.
const (
	defaultSessionTimeout   = time.Hour
	defaultHandshakeTimeout = 30 * time.Second
	defaultMinDataRate      = 1024 // bytes per second
)

// deadlines is the hard limits of one connection, read by the session's
// goroutine and by Close (unix nanoseconds, 0 = none).
type deadlines struct {
	session   atomic.Int64
	handshake atomic.Int64
	data      atomic.Int64
	minRate   int64
	lastRead  time.Time // when the last read returned (session goroutine only)
}

// at returns the deadline for the next read or write: idle from now, cut
// to the hard limits in force.
func (d *deadlines) at(now time.Time, idle time.Duration) time.Time {
	t := time.Time{}
	if idle > 0 {
		t = now.Add(idle)
	}
	for _, h := range []int64{d.session.Load(), d.handshake.Load(), d.data.Load()} {
		if h != 0 && (t.IsZero() || h < t.UnixNano()) {
			t = time.Unix(0, h)
		}
	}
	return t
}

// credit extends the DATA deadline for n bytes received.
func (d *deadlines) credit(n int) {
	if n <= 0 || d.minRate <= 0 || d.data.Load() == 0 {
		return
	}
	d.data.Add(int64(n) * int64(time.Second) / d.minRate)
}

// excuse adds back to the DATA deadline the time since the previous read
// returned: the server was busy, not waiting for the client.
func (d *deadlines) excuse(now time.Time) {
	if d.data.Load() != 0 && !d.lastRead.IsZero() {
		d.data.Add(int64(now.Sub(d.lastRead)))
	}
}

// beginData starts the DATA deadline: one idle timeout from now.
func (c *idleConn) beginData() {
	if c.dl.minRate > 0 && c.idle > 0 {
		c.dl.lastRead = time.Time{}
		c.dl.data.Store(time.Now().Add(c.idle).UnixNano())
	}
}

// endData lifts the DATA deadline.
func (c *idleConn) endData() { c.dl.data.Store(0) }

// sessionStarted lifts the handshake deadline: go-smtp creates the session
// after the implicit-TLS handshake.
func (c *idleConn) sessionStarted() { c.dl.handshake.Store(0) }
