package upstream

import "time"

// With fallback relays, a relay that just timed out (no greeting, a hung
// TLS handshake, a reply that never came) is tried after the others until
// its backoff expires: a silent primary would otherwise cost every message
// the full timeout before the fallback is tried (issue 20). Fast failures
// (connection refused, 421) cost nothing and keep the configured order, so
// a primary that comes back is used again at once. With a single relay the
// queue's own transport backoff does this job.

const (
	relayBackoffMin = 30 * time.Second
	relayBackoffMax = 10 * time.Minute
)

type relayHealth struct {
	until   time.Time
	backoff time.Duration
}

// relayFailure reports whether e is a slow failure of the relay itself,
// one that would cost the next message the full timeout again.
func relayFailure(e *Error) bool {
	return e.Timeout()
}

// relayOrder returns the relays to try: the configured order, but relays in
// backoff after those that are not.
func (c *Client) relayOrder() []string {
	relays := c.cfg.relays()
	if len(relays) == 1 {
		return relays
	}
	now := c.cfg.Clock()
	var ok, later []string
	c.mu.Lock()
	for _, a := range relays {
		if h := c.health[a]; h != nil && now.Before(h.until) {
			later = append(later, a)
		} else {
			ok = append(ok, a)
		}
	}
	c.mu.Unlock()
	return append(ok, later...)
}

// relayResult records how addr did: e nil (it answered) or its failure.
func (c *Client) relayResult(addr string, e *Error) {
	if len(c.cfg.Fallback) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health[addr]
	switch {
	case e == nil:
		if h != nil {
			delete(c.health, addr)
			c.log.Info("relay answers again, back in its configured place", "addr", addr)
		}
	case relayFailure(e):
		if h == nil {
			h = &relayHealth{backoff: min(relayBackoffMin, c.cfg.MinBackoff)}
			c.health[addr] = h
		} else {
			h.backoff = min(2*h.backoff, relayBackoffMax, c.cfg.MaxBackoff)
		}
		h.until = c.cfg.Clock().Add(h.backoff)
		c.log.Warn("relay failed: the other relays go first until its backoff expires", "addr", addr,
			"backoff", h.backoff.String(), "err", e.Error())
	}
}
