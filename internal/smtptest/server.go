// Package smtptest is a real SMTP smarthost for tests: go-smtp's server on
// 127.0.0.1:0 with STARTTLS or implicit TLS (certificates from a CA generated
// in the test), AUTH PLAIN and LOGIN, DSN, and scriptable faults.
//
// Invariants:
//   - Everything listens on loopback only and is torn down by t.Cleanup.
//   - Messages() holds only messages the server answered 250 to, in order.
//   - Stop/Start keep the same port, so a client configured with Addr() sees
//     an outage (connection refused) and then a recovery.
//   - Faults may be changed at any time with SetFaults; each hook is read at
//     the moment it applies.
//   - No package-level mutable state: every Server is independent.
package smtptest

import (
	"crypto/tls"
	"io"
	"log"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value is a plain smarthost that offers
// STARTTLS but requires neither TLS nor AUTH.
type Options struct {
	// RequireTLS refuses MAIL and AUTH before STARTTLS with 530 5.7.0
	// (RFC 3207 §4). A bool cannot tell "omitted" from false, so the zero
	// value means not required: set it explicitly.
	RequireTLS bool
	// NoSTARTTLS does not offer STARTTLS at all (an old or misconfigured
	// smarthost). AUTH is then advertised in clear.
	NoSTARTTLS bool
	// Implicit serves TLS from the first byte (port-465 style, RFC 8314).
	Implicit bool
	// Users are the AUTH PLAIN and LOGIN accounts (name -> password).
	// Non-empty means AUTH is required before MAIL (530 5.7.0, RFC 4954 §6).
	Users map[string]string
	// Cert is the server certificate; default: a leaf for "localhost" and
	// 127.0.0.1 from a fresh CA (see Server.CA).
	Cert *tls.Certificate
	// AuthMechs restricts the advertised mechanisms (default PLAIN and LOGIN).
	AuthMechs []string
	// DSN advertises the RFC 3461 DSN extension.
	DSN bool
	// SMTPUTF8 advertises RFC 6531 SMTPUTF8.
	SMTPUTF8 bool
	// MaxMessageBytes is advertised as SIZE (0: SIZE without a limit).
	MaxMessageBytes int64
	// Faults are the initial scripted failures.
	Faults Faults
	// OAuth, when set, offers XOAUTH2 and OAUTHBEARER (see oauth.go) and
	// requires AUTH before MAIL; it reports whether token is currently
	// valid for user.
	OAuth func(user, token string) bool
}

// Message is one message the server accepted.
type Message struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool
	AuthUser string
	Helo     string
	MailOpts *smtp.MailOptions
	RcptOpts []*smtp.RcptOptions
	At       time.Time
	Conn     int // 1-based number of the connection it arrived on
}

// Server is a running test smarthost.
type Server struct {
	t       testing.TB
	opts    Options
	ca      *CA
	cert    tls.Certificate
	wrong   tls.Certificate // presented when Faults.TLSFail is set
	tlsConf *tls.Config
	srv     *smtp.Server
	addr    string
	quit    chan struct{}

	mu       sync.Mutex
	ln       net.Listener // nil while stopped
	live     map[*trackedConn]struct{}
	faults   Faults
	msgs     []Message
	changed  chan struct{} // closed and replaced when msgs grows
	conns    int
	logins   int
	attempts int
	helos    []string
	datas    int // DATA commands that reached the end of the body
	failed   int // transactions refused by FailFirst so far
	users    map[string]string
}

// New starts a smarthost on 127.0.0.1:0. It is closed by t.Cleanup.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		opts:    opts,
		quit:    make(chan struct{}),
		live:    make(map[*trackedConn]struct{}),
		faults:  opts.Faults,
		changed: make(chan struct{}),
		users:   maps.Clone(opts.Users),
	}
	if opts.Cert != nil {
		s.cert = *opts.Cert
		s.wrong = NewCA(t).Leaf(t, "wrong.invalid")
	} else {
		s.ca = NewCA(t)
		s.cert = s.ca.Leaf(t, "localhost", "127.0.0.1", "::1")
		s.wrong = s.ca.Leaf(t, "wrong.invalid")
	}
	s.tlsConf = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if s.Faults().TLSFail {
				return &s.wrong, nil
			}
			return &s.cert, nil
		},
	}

	srv := smtp.NewServer(&backend{s: s})
	srv.Domain = "smtptest.invalid"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.EnableDSN = opts.DSN
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	// Whether AUTH is allowed before TLS is decided by the session, so that a
	// refusal can carry 530 5.7.0 instead of go-smtp's 523.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if !opts.NoSTARTTLS && !opts.Implicit {
		srv.TLSConfig = s.tlsConf
	}
	if opts.OAuth != nil {
		srv.MaxLineLength = oauthMaxLine // a bearer token is 1.5-3 KB, base64 a third more
	}
	s.srv = srv

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(s.close)
	return s
}

func (s *Server) serve(l net.Listener) {
	s.mu.Lock()
	s.ln = l
	s.mu.Unlock()
	go func() { _ = s.srv.Serve(&listener{Listener: l, s: s}) }()
}

func (s *Server) close() {
	close(s.quit)
	s.Stop()
	_ = s.srv.Close()
}

// Addr is the "127.0.0.1:port" the server listens on (the same across Stop/Start).
func (s *Server) Addr() string { return s.addr }

// CA is the authority that signed the server certificate, or nil when
// Options.Cert was given.
func (s *Server) CA() *CA { return s.ca }

// Faults returns the current faults.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the faults; it applies to the next event it scripts.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// SetUsers replaces the AUTH accounts (e.g. the ISP changed a password);
// it applies to the next AUTH. Whether AUTH is required is still decided by
// Options.Users being non-empty.
func (s *Server) SetUsers(users map[string]string) {
	s.mu.Lock()
	s.users = maps.Clone(users)
	s.mu.Unlock()
}

// Messages returns a copy of the accepted messages, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// WaitMessages waits until at least n messages were accepted and returns
// them; it fails the test after timeout.
func (s *Server) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			m := slices.Clone(s.msgs)
			s.mu.Unlock()
			return m
		}
		ch := s.changed
		have := len(s.msgs)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("smtptest: got %d messages, want %d within %v", have, n, timeout)
			return nil
		}
	}
}

// Conns is the number of TCP connections accepted so far.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Logins is the number of successful AUTH exchanges.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// AuthAttempts is the number of AUTH commands that reached a mechanism
// (successful or not); 0 proves no credentials were sent.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Helos returns the EHLO/HELO names seen, in order: one entry for the first
// greeting of a connection and one for the first greeting after STARTTLS, plus
// one for every later greeting whose name differs from the previous one on
// that session (go-smtp gives the backend no hook for a repeated identical
// EHLO).
func (s *Server) Helos() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.helos)
}

// Stop closes the listener and every open connection: new connections are
// refused until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	for c := range s.live {
		_ = c.Conn.Close()
	}
}

// Start listens again on the same address after Stop. Call it from the test
// goroutine.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	running := s.ln != nil
	s.mu.Unlock()
	if running {
		return
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after Close
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("smtptest: relisten on %s: %v", s.addr, err)
	}
	s.serve(l)
}

func (s *Server) addHelo(name string) {
	s.mu.Lock()
	s.helos = append(s.helos, name)
	s.mu.Unlock()
}
