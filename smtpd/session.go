package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"relayd/cleanup"
	"relayd/envelope"
	"relayd/internal/stack"
	"relayd/maillog"
	"relayd/smtpd/readpath"
)

var (
	errRelayDenied = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relay access denied: authenticate, or connect from a network in listen.relay_networks"}
	// RFC 4954 §6: 530 5.7.0 (go-smtp's ErrAuthRequired says 502).
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errSenderDenied = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender address not allowed for this user"}
	errTooManyRcpts = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
		Message: "Too many recipients"}
	errNeedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "MAIL first"}
	// RFC 3463 4.7.x: a temporary policy refusal; the client retries later.
	errRateLimited = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Too many messages from your address, try again later"}
	// go-smtp's line limit (Server.MaxLineLength) surfaces as a plain
	// error in DATA, which would become 451; it is permanent. Only without
	// readpath's Gate (a go-smtp whose layout is unknown) does
	// go-smtp apply it to content.
	errLineTooLong = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: fmt.Sprintf("Line too long (this server takes lines of at most %d octets in DATA; RFC 5322 section 2.1.1 allows 998)", readpath.CmdLineLimit)}
)

// lineLimitErr turns go-smtp's ErrTooLongLine into errLineTooLong so the
// client gets a clear permanent reply (go-smtp then closes the connection).
type lineLimitErr struct{ r io.Reader }

func (l lineLimitErr) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if errors.Is(err, smtp.ErrTooLongLine) {
		err = errLineTooLong
	}
	return n, err
}

type session struct {
	s        *Server
	st       *Settings
	conn     *smtp.Conn
	ip       netip.Addr
	host     string // reverse DNS (rdns.go), "" if none
	uid      int
	ic       *idleConn // nil if not ours (tests)
	rp       *readpath.Session
	tls      bool
	authUser string

	hasMail bool
	env     envelope.Envelope
}

func (s *Server) newSession(c *smtp.Conn) *session {
	// This is the connection's goroutine, still shallow: the lookup below,
	// logging and the DATA path go deep (see package stack).
	stack.Grow()
	ss := &session{s: s, st: s.settings.Load(), conn: c, uid: -1, rp: readpath.Attach(c)}
	ss.rp.Fast, ss.rp.Switches = !s.slowData, &s.switches
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		ss.tls = true
		nc = tc.NetConn()
	}
	ss.ip = remoteIP(nc)
	if ic, ok := nc.(*idleConn); ok {
		ss.ip = remoteIP(ic.Conn)
		ss.uid = ic.uid
		ss.ic = ic
		ic.sessionStarted()
	}
	if ss.ip.IsValid() {
		ss.host = s.reverse(ss.ip)
	}
	return ss
}

func (ss *session) mayRelay() bool {
	switch {
	case ss.s.cfg.Mode == Local, ss.authUser != "":
		return true
	case ss.s.cfg.Mode != Relay:
		return false
	}
	for _, p := range ss.st.RelayNets {
		if p.Contains(ss.ip) {
			return true
		}
	}
	return false
}

func (ss *session) AuthMechanisms() []string {
	if ss.st.Auth == nil || !ss.tls || ss.s.cfg.Mode == Local {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.st.Auth == nil || !ss.tls {
		return nil, smtp.ErrAuthUnsupported
	}
	check := func(user, pass string) error {
		if err := ss.st.Auth.Authenticate(ss.ip, user, pass); err != nil {
			// A mail log line (status=rejected), so the rejection metric
			// counts it under reason="auth".
			dsn, reply := "5.7.8", "authentication failed"
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				dsn = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
				if se.Code == 421 {
					reply = "authentication refused: too many failures"
					// RFC 5321 §3.8: after 421 the server closes the
					// connection (once the reply is out).
					ss.hangUp()
				}
			}
			maillog.Log(ss.s.cfg.Logger, maillog.Event{Status: maillog.Rejected, DSN: dsn, Reply: reply,
				Extra: append(ipAttr(ss.ip), slog.String("user", user))})
			return err
		}
		ss.authUser = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return newLoginServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if (ss.s.cfg.Mode == Submission || ss.s.cfg.Mode == Submissions) && ss.authUser == "" {
		return errAuthRequired
	}
	if !ss.s.limiter.allow(ss.ip, ss.st.MaxMessagesPerMinutePerIP) {
		maillog.Log(ss.s.cfg.Logger, maillog.Event{From: from, Status: maillog.Rejected,
			DSN: "4.7.1", Reply: "per-IP message rate limit", Extra: ipAttr(ss.ip)})
		return errRateLimited
	}
	addr, serr := ss.s.intake.Sender(from)
	if serr != nil {
		return serr
	}
	// A reload may have removed every account (Auth nil): refuse rather
	// than trust a session authenticated under the old settings.
	if ss.authUser != "" && (ss.st.Auth == nil || !ss.st.Auth.MaySend(ss.authUser, addr)) {
		return errSenderDenied
	}
	ss.env = envelope.Envelope{From: addr}
	if opts != nil {
		ss.env.Ret = string(opts.Return)
		ss.env.EnvID = opts.EnvelopeID
		ss.env.UTF8 = opts.UTF8
		ss.env.Body = string(opts.Body)
	}
	ss.hasMail = true
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !ss.hasMail {
		return errNeedMail
	}
	if !ss.mayRelay() {
		maillog.Log(ss.s.cfg.Logger, maillog.Event{From: ss.env.From, To: to, Status: maillog.Rejected,
			DSN: "5.7.1", Reply: "relay access denied", Extra: ipAttr(ss.ip)})
		return errRelayDenied
	}
	if max := ss.st.MaxRecipients; max > 0 && len(ss.env.Rcpts) >= max {
		return errTooManyRcpts
	}
	addr, serr := ss.s.intake.Recipient(to)
	if serr != nil {
		return serr
	}
	if slices.ContainsFunc(ss.env.Rcpts, func(r envelope.Recipient) bool { return r.Addr == addr }) {
		return nil // several local names map to one admin: deliver once
	}
	r := envelope.Recipient{Addr: addr, State: envelope.Pending}
	if opts != nil {
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, string(n))
		}
		if opts.OriginalRecipient != "" {
			r.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		} else if addr != to {
			r.ORcpt = "rfc822;" + to
		}
	}
	ss.env.Rcpts = append(ss.env.Rcpts, r)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	// Content follows the DATA line, read by go-smtp even if it is
	// refused here (readpath's Gate).
	ss.rp.Data(r)
	if !ss.hasMail || len(ss.env.Rcpts) == 0 {
		return errNeedMail
	}
	if ss.ic != nil {
		ss.ic.beginData()
		defer ss.ic.endData()
	}
	origin := envelope.FromSMTP
	if ss.s.cfg.Mode == Local {
		origin = envelope.FromLocal
	}
	sub := &cleanup.Submission{
		Envelope:   ss.env,
		Origin:     origin,
		Helo:       ss.conn.Hostname(),
		RemoteIP:   ss.ip,
		RemoteHost: ss.host,
		Proto:      ss.proto(),
		AuthUser:   ss.authUser,
		LocalUID:   ss.uid,
	}
	if user, a := ss.authUser, ss.st.Auth; user != "" && a != nil {
		sub.FromAllowed = func(addr string) bool { return a.MaySend(user, addr) }
	}
	// On a cleartext connection, the DATA fast path; else go-smtp's
	// reader, woken up while it waits (readpath).
	var w readpath.Waker
	if ss.ic != nil {
		w = ss.ic
	}
	r, _, finish := ss.rp.Content(r, ss.s.smtp.MaxMessageBytes, w)
	defer finish()
	id, err := ss.s.intake.Submit(context.Background(), sub, lineLimitErr{r})
	if errors.Is(err, cleanup.ErrBareCR) {
		// RFC 5321 §2.3.8: CR only in CRLF. After a bare CR the framing
		// is uncertain (go-smtp's reader, and the fast path that mirrors
		// it, do not end "x\r\r\n.\r\n"): rather than read on for an
		// end that may never come, taking the client's next pipelined
		// transaction for content, the reply is sent and the connection
		// closed, on both DATA paths alike.
		ss.hangUp()
	}
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // unwrapped: go-smtp checks the type, not the chain
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing"}
	}
	// go-smtp writes a returned SMTPError as the reply, whatever its
	// code; this is how the queue ID reaches the client.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// hangUp makes the connection end once the pending replies are sent.
func (ss *session) hangUp() {
	nc := ss.conn.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if ic, ok := nc.(*idleConn); ok {
		ic.hangUp.Store(true)
	}
}

func (ss *session) proto() string {
	p := "ESMTP"
	if ss.tls {
		p += "S"
	}
	if ss.authUser != "" {
		p += "A"
	}
	return p
}

func (ss *session) Reset() {
	ss.rp.Reset()
	ss.hasMail = false
	ss.env = envelope.Envelope{}
	ss.st = ss.s.settings.Load()
}

func (ss *session) Logout() error { return nil }

func ipAttr(ip netip.Addr) []slog.Attr {
	if !ip.IsValid() {
		return nil
	}
	return []slog.Attr{slog.String("client", ip.String())}
}

var _ net.Conn = (*idleConn)(nil)
