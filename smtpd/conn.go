package smtpd

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// idleConn refreshes its deadline before every Read and Write, so a client
// is dropped after IdleTimeout of silence, while a large message sent at
// any sane speed is never cut off. go-smtp's own ReadTimeout is set once per
// command line and not refreshed during DATA, which cuts slow large
// uploads; this wrapper replaces it.
type idleConn struct {
	net.Conn
	idle    time.Duration
	release func()
	once    sync.Once
	uid     int // peer uid on a Unix socket, -1 otherwise
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Write(p)
}

func (c *idleConn) Close() error {
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return c.Conn.Close()
}

// limitListener caps concurrent connections overall and per client IP.
// A client over a limit gets "421 4.7.0" and is closed before any session
// is created (RFC 5321 §3.8 allows 421 at the greeting).
type limitListener struct {
	net.Listener
	idle      time.Duration
	max       int
	maxPerIP  int
	peerUID   func(net.Conn) int
	onRefused func(ip netip.Addr, reason string)

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if reason := l.acquire(ip); reason != "" {
			if l.onRefused != nil {
				l.onRefused(ip, reason)
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "421 4.7.0 %s, try again later\r\n", reason)
			c.Close()
			continue
		}
		uid := -1
		if l.peerUID != nil {
			uid = l.peerUID(c)
		}
		return &idleConn{Conn: c, idle: l.idle, uid: uid, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) acquire(ip netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return "Too many connections"
	}
	if l.maxPerIP > 0 && ip.IsValid() && l.perIP[ip] >= l.maxPerIP {
		return "Too many connections from " + ip.String()
	}
	l.total++
	if ip.IsValid() {
		l.perIP[ip]++
	}
	return ""
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if ip.IsValid() {
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
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
