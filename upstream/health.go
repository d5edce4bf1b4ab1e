package upstream

import "time"

// With fallback relays, a relay that just failed at session level (no
// connection, no greeting, TLS, a timeout anywhere, 421, rate limiting) is
// tried after the others until its backoff expires: a silent primary would
// otherwise cost every message the full timeout before the fallback is
// tried (issue 20). With a single relay the queue's own transport backoff
// does this job.

const (
	relayBackoffMin = 30 * time.Second
	relayBackoffMax = 10 * time.Minute
)

type relayHealth struct {
	until   time.Time
	backoff time.Duration
}

// relayFailure reports whether e says the relay itself is in trouble, as
// opposed to this message (a body that cannot be read) or the credentials
// (authgate.go).
func relayFailure(e *Error) bool {
	switch {
	case e.Timeout(), e.Code == 421, throttled(e.Reply()):
		return true
	}
	switch e.Stage {
	case StageConnect, StageGreeting, StageEHLO, StageSTARTTLS, StageTLS:
		return true
	}
	return false
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
			h = &relayHealth{backoff: relayBackoffMin}
			c.health[addr] = h
		} else {
			h.backoff = min(2*h.backoff, relayBackoffMax)
		}
		h.until = c.cfg.Clock().Add(h.backoff)
		c.log.Warn("relay failed: the other relays go first until its backoff expires", "addr", addr,
			"backoff", h.backoff.String(), "err", e.Error())
	}
}
