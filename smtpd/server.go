// Package smtpd is relayd's SMTP listener: a go-smtp backend that decides
// who may relay, enforces limits and streams DATA into the cleanup stage.
//
// Invariants:
//   - Never an open relay: a recipient is accepted only from a client in
//     RelayNets (plain SMTP mode), an authenticated client, or a local
//     Unix-socket client. Anyone else gets 554 5.7.1 at RCPT.
//   - AUTH is offered only over TLS (go-smtp's AllowInsecureAuth stays
//     false), and the submission modes refuse MAIL before AUTH with
//     530 5.7.0 (RFC 4954 §6).
//   - Every error returned to go-smtp is an *smtp.SMTPError, never wrapped:
//     go-smtp turns anything else into a permanent 554.
//   - Every read and write is under an idle deadline (idleConn); DATA is
//     streamed, never held in memory.
//   - On cleartext connections DATA content is read from the socket a
//     buffer at a time (readpath) and decoded exactly as go-smtp's own
//     reader would: same end of content, dot removal and size limit;
//     the bytes read past the end go back to go-smtp.
//   - Replies are sent when the server is about to wait for the client, or
//     closes (RFC 2920 §3), never later.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/cleanup"
	"relayd/smtpd/readpath"
)

// Mode is what a listener is for.
type Mode int

const (
	// Relay is port 25 for local applications: clients in RelayNets may
	// relay; others only after AUTH (which needs STARTTLS).
	Relay Mode = iota
	// Submission requires STARTTLS and AUTH (RFC 6409).
	Submission
	// Submissions is implicit TLS and requires AUTH (RFC 8314).
	Submissions
	// Local is the Unix socket of the sendmail command: trusted, and the
	// peer uid is recorded in the Received field.
	Local
)

// Intake is the next stage (implemented by *cleanup.Cleanup).
type Intake interface {
	Submit(ctx context.Context, sub *cleanup.Submission, r io.Reader) (string, error)
	Sender(addr string) (string, *smtp.SMTPError)
	Recipient(addr string) (string, *smtp.SMTPError)
}

// Authenticator checks SMTP AUTH credentials and sender permissions.
type Authenticator interface {
	// Authenticate returns nil for good credentials, or an *smtp.SMTPError
	// (535 5.7.8 for bad ones, 454/421 when throttled).
	Authenticate(ip netip.Addr, user, pass string) error
	// MaySend reports whether user may use from as envelope sender.
	MaySend(user, from string) bool
}

// Resolver looks up reverse DNS for the Received field.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Settings are the parts of the configuration that a reload may change.
type Settings struct {
	RelayNets       []netip.Prefix
	MaxMessageBytes int64
	MaxRecipients   int
	Auth            Authenticator // nil: no AUTH offered
	// MaxMessagesPerMinutePerIP caps messages per client IP (0: no cap).
	MaxMessagesPerMinutePerIP int
}

// Config configures one listener.
type Config struct {
	Hostname    string
	Mode        Mode
	TLS         *tls.Config // STARTTLS (Relay, Submission) or implicit TLS (Submissions)
	IdleTimeout time.Duration
	// SessionTimeout ends any connection this long after it was accepted
	// (default 1h); HandshakeTimeout bounds the implicit-TLS handshake
	// (default 30s); MinDataRate is the average rate, in bytes per
	// second, below which DATA is cut after one idle timeout of grace
	// (default 1024). See deadline.go.
	SessionTimeout   time.Duration
	HandshakeTimeout time.Duration
	MinDataRate      int64
	// MaxConns and MaxConnsPerIP (per local uid on the Local socket)
	// apply to this server's listeners together, unless Limits is set.
	MaxConns      int
	MaxConnsPerIP int
	// Limits, when set, is shared with other servers (listen.max_connections
	// is overall); MaxConns and MaxConnsPerIP are then unused.
	Limits   *ConnLimits
	Resolver Resolver // nil: no reverse lookups
	Logger   *slog.Logger
	Settings Settings
}

// Server serves one or more listeners of one mode.
type Server struct {
	cfg      Config
	intake   Intake
	settings atomic.Pointer[Settings]
	smtp     *smtp.Server
	limiter  *ipLimiter
	rdns     rdnsCache
	slowData bool         // tests: go-smtp's DATA reader only, no fast path (readpath)
	switches atomic.Int64 // DATA hand-overs to the fast path (tests)
}

// New returns a server; call Serve for each listener.
func New(cfg Config, in Intake) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = defaultSessionTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.MinDataRate <= 0 {
		cfg.MinDataRate = defaultMinDataRate
	}
	if cfg.Limits == nil {
		cfg.Limits = NewConnLimits(cfg.MaxConns, cfg.MaxConnsPerIP)
	}
	s := &Server{cfg: cfg, intake: in, limiter: newIPLimiter(nil), rdns: rdnsCache{now: time.Now}}
	s.settings.Store(&cfg.Settings)

	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Hostname
	// Command lines only, once the session has put readpath's Gate in;
	// before that (the greeting, STARTTLS) go-smtp's own
	// count applies, with the same limit.
	srv.MaxLineLength = readpath.CmdLineLimit
	if !readpath.GateAvailable {
		cfg.Logger.Error("go-smtp's line limiter was not found: message lines over the command line limit are refused", "limit", readpath.CmdLineLimit)
	}
	srv.MaxMessageBytes = cfg.Settings.MaxMessageBytes
	srv.MaxRecipients = cfg.Settings.MaxRecipients
	srv.EnableDSN = true
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = log.New(slogWriter{cfg.Logger}, "", 0)
	if cfg.Mode != Submissions {
		srv.TLSConfig = cfg.TLS // STARTTLS offered when set
	}
	s.smtp = srv
	return s
}

// Update swaps the reloadable settings; sessions started afterwards use
// them. The SIZE and RCPTMAX that go-smtp advertises and enforces stay
// those of start-up; the session enforces the current ones too.
func (s *Server) Update(st Settings) {
	s.settings.Store(&st)
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	ll := &limitListener{
		Listener: l, idle: s.cfg.IdleTimeout, lineLimit: s.dataLineLimit(),
		limits: s.cfg.Limits, session: s.cfg.SessionTimeout, minRate: s.cfg.MinDataRate,
		onRefused: func(who string, reason string) {
			s.cfg.Logger.Warn("connection refused", "client", who, "reason", reason)
		},
	}
	if s.cfg.Mode == Local {
		ll.peerUID = unixPeerUID
	}
	var lis net.Listener = ll
	if s.cfg.Mode == Submissions {
		ll.handshake = s.cfg.HandshakeTimeout
		lis = tls.NewListener(ll, s.cfg.TLS)
	}
	err := s.smtp.Serve(lis)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// dataLineLimit is the line limit go-smtp applies to DATA content, which
// the fast path mirrors: none once the session's Gate is in (it always
// is when Data runs: MAIL needs EHLO, which creates the session).
func (s *Server) dataLineLimit() int {
	if readpath.GateAvailable {
		return 0
	}
	return s.smtp.MaxLineLength
}

// Shutdown stops accepting, lets sessions finish until ctx is done, then
// closes the rest. A session cut in DATA never got its 250, so nothing
// accepted is lost.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.smtp.Close()
	}
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.newSession(c), nil
}

// slogWriter routes go-smtp's error log into slog at debug level: its
// lines are per-connection noise (client hung up, bad command).
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("smtp", "detail", string(p))
	return len(p), nil
}
