package upstream

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"relayd/envelope"
	"relayd/internal/tlsmode"
)

// Client delivers to the smarthost, reusing connections. It is safe for
// concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	open int        // connections in use or idle
	idle []*session // oldest first
	// authBlock: relays whose credentials were rejected (authgate.go).
	authBlock map[string]*authState
	// health: relays in backoff after a session failure (health.go).
	health  map[string]*relayHealth
	changed chan struct{}
	closed  bool

	oauth    oauthState   // sasl.go
	eightBit atomic.Int32 // what the last EHLO said of 8BITMIME (mailcmd.go)
}

// New validates cfg and returns a Client. It does not connect.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}),
		authBlock: map[string]*authState{}, health: map[string]*relayHealth{}}
	if cfg.TLS == tlsmode.None {
		c.log.Warn("UPSTREAM TLS IS DISABLED: mail to the smarthost travels in clear (allowed only because it is loopback)",
			"address", cfg.Address)
	}
	if cfg.InsecureSkipVerify {
		c.log.Warn("UPSTREAM CERTIFICATE VERIFICATION IS DISABLED: anyone on the path can impersonate the smarthost and read mail and credentials",
			"address", cfg.Address)
	}
	return c, nil
}

// Deliver runs one transaction for d's pending recipients on the primary
// relay, then on each fallback in order while the failure is session-level;
// a relay in backoff after such a failure goes after the others
// (health.go). A non-nil error is always an *Error (the relay tried last);
// earlier relays' failures are logged.
func (c *Client) Deliver(ctx context.Context, d *envelope.Delivery) (envelope.Outcome, error) {
	if len(d.Rcpts) == 0 {
		return envelope.Outcome{}, nil
	}
	var last *Error
	relays := c.relayOrder()
	for i, addr := range relays {
		out, e := c.deliverVia(ctx, addr, d)
		if ctx.Err() == nil {
			c.relayResult(addr, e)
		}
		if e == nil {
			level := slog.LevelDebug
			if i > 0 {
				level = slog.LevelInfo
			}
			c.log.Log(ctx, level, "relay answered", "id", d.ID, "relay", out.Relay, "fallback", i > 0)
			return out, nil
		}
		last = e
		if ctx.Err() != nil {
			break
		}
		if i+1 < len(relays) {
			c.log.Warn("relay failed, trying the next one", "id", d.ID, "addr", addr, "err", e.Error())
		}
	}
	return envelope.Outcome{}, last
}

// deliverVia delivers through addr, redialling once when a pooled
// connection turns out to be dead (closed by the server while idle).
func (c *Client) deliverVia(ctx context.Context, addr string, d *envelope.Delivery) (envelope.Outcome, *Error) {
	for attempt := 0; ; attempt++ {
		s, e := c.get(ctx, addr)
		if e != nil {
			return envelope.Outcome{}, e
		}
		reused := s.used > 0
		stop := context.AfterFunc(ctx, func() { s.conn.Close() })
		// The total deadline: no reply or write goes past it, however
		// the smarthost trickles (see deadlineConn).
		limit := c.cfg.deliveryTimeout(d.Size)
		s.dc.until = time.Now().Add(limit)
		out, e := c.transact(s, d)
		s.dc.until = time.Time{}
		if e != nil && e.Timeout() && e.Hint == "" {
			e.Hint = "the smarthost did not answer in time (upstream.timeout per reply, " + limit.Round(time.Second).String() + " for this delivery): counted as a smarthost failure"
		}
		if stopped := stop(); e == nil && stopped && ctx.Err() == nil && !s.dead {
			s.used++
			c.put(s)
			return out, nil
		}
		c.discard(s)
		if e == nil { // finished, but the context fired meanwhile: the answer is still valid
			return out, nil
		}
		e = c.ctxErr(ctx, e)
		if ctx.Err() == nil && reused && attempt == 0 && staleConn(e) {
			c.log.Debug("pooled connection went away, redialling", "addr", addr, "err", e.Error())
			continue
		}
		return envelope.Outcome{}, e
	}
}

// staleConn reports a failure typical of a connection the server closed
// while it sat idle (a network error or 421 at RSET or MAIL), or one whose
// transaction state the server no longer agrees with (503 at MAIL, even
// after RSET): a new connection starts from a clean state.
func staleConn(e *Error) bool {
	return (e.Stage == StageReset || e.Stage == StageMail) && (e.Code == 0 || e.Code == 421 || e.Code == 503)
}

// Probe checks each relay the way a delivery would (connect, EHLO,
// STARTTLS, certificate, AUTH) and QUITs without sending mail. The result
// joins one *Error per failing relay.
func (c *Client) Probe(ctx context.Context) error {
	var errs []error
	for _, addr := range c.cfg.relays() {
		s, e := c.dial(ctx, addr)
		if e != nil {
			errs = append(errs, e)
			continue
		}
		s.quit()
	}
	return errors.Join(errs...)
}
