package upstream

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"
)

// get returns a connection to addr: an idle one if any, else a new one once
// fewer than MaxConns exist. An idle connection to another relay is closed to
// make room; otherwise get waits for a connection to be released.
func (c *Client) get(ctx context.Context, addr string) (*session, *Error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, &Error{Stage: StageConnect, Addr: addr, Temporary: true, Err: errors.New("client closed")}
		}
		if s := c.takeIdle(addr); s != nil {
			c.mu.Unlock()
			if c.cfg.Clock().Sub(s.idleAt) >= c.cfg.IdleKeep {
				go s.quit()
				c.release()
				continue
			}
			return s, nil
		}
		if c.open < c.cfg.MaxConns {
			c.open++
			c.mu.Unlock()
			s, e := c.dial(ctx, addr)
			if e != nil {
				c.release()
				return nil, e
			}
			return s, nil
		}
		if len(c.idle) > 0 { // evict the oldest idle connection to another relay
			s := c.idle[0]
			c.idle = c.idle[1:]
			s.idleTimer.Stop()
			c.mu.Unlock()
			go s.quit()
			c.release()
			continue
		}
		wait := c.changed
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, c.ctxErr(ctx, &Error{Stage: StageConnect, Addr: addr, Temporary: true,
				Err: errors.New("waiting for a free connection slot")})
		}
	}
}

// takeIdle removes and returns the most recently used idle connection to
// addr. c.mu is held.
func (c *Client) takeIdle(addr string) *session {
	for i := len(c.idle) - 1; i >= 0; i-- {
		if s := c.idle[i]; s.addr == addr {
			c.idle = slices.Delete(c.idle, i, i+1)
			s.idleTimer.Stop()
			return s
		}
	}
	return nil
}

// put parks a healthy connection for reuse, or QUITs it when reuse is off.
func (c *Client) put(s *session) {
	c.mu.Lock()
	if c.closed || c.cfg.IdleKeep < 0 {
		c.mu.Unlock()
		s.quit()
		c.release()
		return
	}
	s.idleAt = c.cfg.Clock()
	s.idleTimer = time.AfterFunc(c.cfg.IdleKeep, func() { c.expire(s) })
	c.idle = append(c.idle, s)
	c.signal()
	c.mu.Unlock()
}

// expire QUITs s if it is still idle.
func (c *Client) expire(s *session) {
	c.mu.Lock()
	i := slices.Index(c.idle, s)
	if i < 0 {
		c.mu.Unlock()
		return
	}
	c.idle = slices.Delete(c.idle, i, i+1)
	c.mu.Unlock()
	s.quit()
	c.release()
}

// discard closes a broken connection and frees its slot.
func (c *Client) discard(s *session) {
	_ = s.conn.Close()
	c.release()
}

// release frees one connection slot.
func (c *Client) release() {
	c.mu.Lock()
	c.open--
	c.signal()
	c.mu.Unlock()
}

// signal wakes waiters in get. c.mu is held.
func (c *Client) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Close QUITs the idle connections; connections in use are closed when their
// delivery ends. Deliver fails after Close.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, s := range idle {
		s.idleTimer.Stop()
		s.quit()
		c.release()
	}
	if cl, ok := c.cfg.Tokens.(io.Closer); ok {
		cl.Close() // e.g. stops a token source's keep-alive refreshes
	}
	return nil
}
