package upstream

import (
	"context"
	"errors"
	"time"
)

// After a smarthost rejects the credentials, relayd does not log in to it
// again until a backoff has passed, and then with one probe at a time: ISPs
// lock accounts after a few failed logins, and a queue of messages would
// otherwise open one failed AUTH each (issue 20). The state is per relay
// and lives in the Client, so a reload (a new Client, perhaps with a fixed
// password) starts afresh.

// ErrAuthBackoff is wrapped by the *Error returned, without connecting,
// while a relay's credentials are in backoff after a rejection.
var ErrAuthBackoff = errors.New("not logging in again yet: the smarthost rejected the credentials")

// CredentialsRejected reports whether e is the smarthost refusing the
// credentials themselves (535, RFC 4954 §6; 534 "mechanism too weak" /
// "log in with a web browser"), whatever SASL mechanism was used: a
// mechanism (PLAIN, LOGIN, OAuth2) that fails on the credentials reports an
// *Error at StageAuth with the server's code. Such a failure will not clear
// by itself, so the relay is not asked again until its backoff expires.
func (e *Error) CredentialsRejected() bool {
	return e != nil && e.Stage == StageAuth && (e.Code == 535 || e.Code == 534) && !e.staleToken && !errors.Is(e.Err, ErrAuthBackoff)
}

type authState struct {
	good    bool          // a login succeeded and none was rejected since
	probe   chan struct{} // closed when the login in flight ends; nil: none
	until   time.Time     // no login before this, after a rejection
	backoff time.Duration // the current backoff; 0: no rejection
	last    *Error        // the rejection
}

// authGate is asked before dialling addr when credentials are configured.
// Until a login to addr has succeeded, one login at a time is let through
// (a probe) and the others wait for its result; after a rejection none is
// until the backoff expires, then one probe. It returns an *Error wrapping
// ErrAuthBackoff while addr is in backoff; probe reports that the caller's
// login is the probe, for authDone.
func (c *Client) authGate(ctx context.Context, addr string) (probe bool, _ *Error) {
	if c.cfg.Username == "" {
		return false, nil
	}
	for {
		c.mu.Lock()
		st := c.authBlock[addr]
		if st == nil {
			st = &authState{}
			c.authBlock[addr] = st
		}
		switch {
		case st.good:
			c.mu.Unlock()
			return false, nil
		case st.backoff > 0 && c.cfg.Clock().Before(st.until):
			l := st.last
			c.mu.Unlock()
			fix := "check upstream.username and upstream.password_file, then reload"
			if l.Hint != "" {
				fix = l.Hint // the rejection's own diagnosis (OAuth2: status and fix)
			}
			return false, &Error{Stage: StageAuth, Addr: addr, Temporary: true, Code: l.Code, Enhanced: l.Enhanced, Message: l.Message,
				Err: ErrAuthBackoff, kind: l.Kind(), oauthStatus: l.oauthStatus,
				Hint: "no new login before " + st.until.Format(time.RFC3339) + ": " + fix}
		case st.probe == nil:
			st.probe = make(chan struct{})
			c.mu.Unlock()
			return true, nil
		}
		wait := st.probe
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, sessionError(StageAuth, addr, ctx.Err())
		}
	}
}

// authDone records the result e (nil: logged in) of a session setup to
// addr that passed authGate.
func (c *Client) authDone(addr string, probe bool, e *Error) {
	if c.cfg.Username == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.authBlock[addr]
	if probe {
		close(st.probe)
		st.probe = nil
	}
	switch {
	case e.CredentialsRejected():
		if !probe && !st.good {
			return // a concurrent rejection already counted
		}
		st.good = false
		if st.backoff == 0 {
			st.backoff = c.cfg.MinBackoff
			c.log.Warn("smarthost rejected the credentials: no new login to it until the backoff expires, then one attempt at a time (mail is deferred, not bounced)",
				"addr", addr, "reply", e.Error(), "backoff", st.backoff.String())
		} else {
			st.backoff = min(2*st.backoff, c.cfg.MaxBackoff)
			c.log.Debug("smarthost still rejects the credentials", "addr", addr, "backoff", st.backoff.String())
		}
		st.until, st.last = c.cfg.Clock().Add(st.backoff), e
	case e == nil:
		if st.backoff > 0 {
			c.log.Info("smarthost accepted the credentials again", "addr", addr)
		}
		st.good, st.backoff, st.last = true, 0, nil
	}
	// Any other failure (network, TLS) says nothing about the
	// credentials: the next attempt probes again.
}
