package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/loopback"
	"relayd/internal/tlsmode"
	"relayd/upstream/wire"
)

// session is one authenticated SMTP connection to one relay.
type session struct {
	c     *smtp.Client
	conn  net.Conn // the TCP connection: closing it aborts anything in flight
	wire  net.Conn // what c reads and writes (TLS, deadlines): the body goes here
	addr  string   // configured host:port
	relay string   // "host[ip]:port", for Outcome.Relay and logs
	used  int      // transactions completed on this connection
	// open: a transaction was started (MAIL sent) and not ended by a
	// reply to the final dot, so the next one needs RSET first.
	open bool
	// wr is relayd's own access to c's connection (upstream/wire): the
	// body, pipelined groups, RSET and their replies.
	wr *wire.Conn
	// dc is the deadline layer on the TCP connection: deliverVia sets its
	// total deadline for each delivery.
	dc *deadlineConn
	// dead: the connection is in a state no later transaction may use
	// (e.g. a 354 after a refused envelope): close it, do not pool it.
	dead bool

	idleAt    time.Time
	idleTimer *time.Timer
}

// syntheticGreeting is fed to smtp.NewClient after the session has already
// consumed the real greeting (see greetedConn).
const syntheticGreeting = "220 relayd-upstream greeting already read\r\n"

// dial connects to addr and runs greeting, EHLO, TLS and AUTH.
func (c *Client) dial(ctx context.Context, addr string) (*session, *Error) {
	host, port, _ := net.SplitHostPort(addr) // validated in New
	probe, e := c.authGate(ctx, addr)
	if e != nil {
		return nil, e
	}
	s, e := c.dialLogin(ctx, addr, host, port)
	c.authDone(addr, probe, e)
	return s, e
}

// dialLogin is dial past the AUTH backoff gate.
func (c *Client) dialLogin(ctx context.Context, addr, host, port string) (*session, *Error) {
	cfg := c.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	raw, err := cfg.Dialer.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, c.ctxErr(ctx, sessionError(StageConnect, addr, err))
	}
	if cfg.TLS == tlsmode.None {
		// Plain text is allowed to loopback only: check the address
		// actually dialled, not just the configured name ("localhost"
		// could resolve elsewhere).
		if !loopback.Host(remoteIP(raw)) {
			raw.Close()
			return nil, &Error{Stage: StageConnect, Addr: addr, Temporary: false,
				Err: errors.New("tls = \"none\" but the peer " + remoteIP(raw) + " is not a loopback address: refusing to send in clear")}
		}
	}
	s := &session{conn: raw, addr: addr, relay: host + "[" + remoteIP(raw) + "]:" + port}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	e := c.setup(ctx, s, host)
	if !stop() || ctx.Err() != nil {
		raw.Close()
		if e == nil {
			e = sessionError(StageConnect, addr, ctx.Err())
		}
		return nil, c.ctxErr(ctx, e)
	}
	if e != nil {
		raw.Close()
		return nil, e
	}
	return s, nil
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	h, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return h
}

// ctxErr makes a failure caused by cancellation say so (errors.Is works).
func (c *Client) ctxErr(ctx context.Context, e *Error) *Error {
	if ctx.Err() != nil && !errors.Is(e, ctx.Err()) {
		e.Err = fmt.Errorf("%w (%v)", ctx.Err(), e.Err)
		e.Code = 0
	}
	return e
}

func (c *Client) tlsConfig(host string) *tls.Config {
	return &tls.Config{
		ServerName:         host,
		RootCAs:            c.cfg.RootCAs,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: c.cfg.InsecureSkipVerify,
	}
}

func (c *Client) setup(ctx context.Context, s *session, host string) *Error {
	cfg := c.cfg
	dc := &deadlineConn{Conn: s.conn, timeout: cfg.Timeout}
	s.dc = dc
	var conn net.Conn = dc
	isTLS := false

	if cfg.TLS == tlsmode.Implicit {
		tc := tls.Client(conn, c.tlsConfig(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return sessionError(StageTLS, s.addr, err)
		}
		conn, isTLS = tc, true
	}

	tp := textproto.NewConn(newReplyConn(conn, dc, cfg.Timeout))
	if _, _, err := tp.ReadResponse(220); err != nil {
		return sessionError(StageGreeting, s.addr, err)
	}

	if cfg.TLS == tlsmode.StartTLS {
		if e := c.startTLS(ctx, s, tp, host); e != nil {
			return e
		}
		tc := tls.Client(conn, c.tlsConfig(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return sessionError(StageTLS, s.addr, err)
		}
		conn, isTLS = tc, true
		// RFC 3207 §4.2: no greeting follows the handshake.
		conn = &greetedConn{Conn: newReplyConn(conn, dc, cfg.Timeout), pending: []byte(syntheticGreeting)}
	} else {
		// Pass on whatever the reader buffered after the greeting.
		conn = &greetedConn{Conn: newReplyConn(conn, dc, cfg.Timeout), pending: append([]byte(syntheticGreeting), buffered(tp.R)...)}
	}

	s.c = smtp.NewClient(conn)
	s.wire = conn
	s.c.CommandTimeout = cfg.Timeout
	s.c.SubmissionTimeout = cfg.Timeout
	if err := s.c.Hello(cfg.Hostname); err != nil {
		return sessionError(StageEHLO, s.addr, err)
	}
	if cfg.Username != "" {
		return c.auth(ctx, s, host, isTLS)
	}
	return nil
}

func buffered(r *bufio.Reader) []byte {
	b, _ := r.Peek(r.Buffered())
	return append([]byte(nil), b...)
}

// startTLS runs EHLO and STARTTLS in clear on tp (RFC 3207 §4).
func (c *Client) startTLS(ctx context.Context, s *session, tp *textproto.Conn, host string) *Error {
	if err := tp.PrintfLine("EHLO %s", c.cfg.Hostname); err != nil {
		return sessionError(StageEHLO, s.addr, err)
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return sessionError(StageEHLO, s.addr, err)
	}
	offered := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		if kw, _, _ := strings.Cut(line, " "); strings.EqualFold(kw, "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		_ = tp.PrintfLine("QUIT")
		return &Error{Stage: StageSTARTTLS, Addr: s.addr, Err: errors.New("server offers no STARTTLS"),
			kind: KindNoSTARTTLS, Hint: KindNoSTARTTLS.hint(s.addr)}
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return sessionError(StageSTARTTLS, s.addr, err)
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return sessionError(StageSTARTTLS, s.addr, err)
	}
	// Anything after the 220 was sent in clear before the handshake and
	// would be read as if it came over TLS: the STARTTLS command injection
	// of CVE-2011-0411. Refuse it.
	if tp.R.Buffered() > 0 {
		return &Error{Stage: StageSTARTTLS, Addr: s.addr, Temporary: true,
			Err: errors.New("server sent data after 220 to STARTTLS (possible command injection)")}
	}
	return nil
}

// auth authenticates (RFC 4954) with the mechanism saslClient picks, only
// over TLS or to loopback.
func (c *Client) auth(ctx context.Context, s *session, host string, isTLS bool) *Error {
	if !isTLS && !loopback.Host(host) {
		return &Error{Stage: StageAuth, Addr: s.addr, Err: errors.New("refusing to send credentials without TLS")}
	}
	ok, mechs := s.c.Extension("AUTH")
	if !ok {
		return &Error{Stage: StageAuth, Addr: s.addr, Err: errors.New("server offers no AUTH"),
			kind: KindNoAUTH, Hint: KindNoAUTH.hint(s.addr)}
	}
	client, e := c.saslClient(ctx, s, host, mechs)
	if e != nil {
		return e
	}
	if err := s.c.Auth(client); err != nil {
		// Never include the exchange itself: only the server's reply.
		return c.authFailed(s, client, sessionError(StageAuth, s.addr, err))
	}
	c.authOK()
	return nil
}

// quit says QUIT (bounded by the connection deadline) and closes.
func (s *session) quit() {
	_ = s.c.Quit()
	_ = s.conn.Close()
}
