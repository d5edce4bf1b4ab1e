package upstream

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
	"relayd/internal/smtptest"
	"relayd/internal/tlsmode"
)

func TestSTARTTLSAuthDelivery(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, nil)
	out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net", "c@example.net"))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(out.Rcpts) != 2 || out.Rcpts[0] != nil || out.Rcpts[1] != nil {
		t.Fatalf("Rcpts = %v", out.Rcpts)
	}
	if want := "127.0.0.1[127.0.0.1]:"; !strings.HasPrefix(out.Relay, want) {
		t.Errorf("Relay = %q", out.Relay)
	}
	m := s.WaitMessages(t, 1, 5*time.Second)[0]
	if !m.TLS || m.AuthUser != testUser || m.From != "a@example.com" || len(m.To) != 2 {
		t.Errorf("message = TLS %v user %q from %q to %v", m.TLS, m.AuthUser, m.From, m.To)
	}
	if string(m.Data) != testBody {
		t.Errorf("body differs: got %d bytes, want %d", len(m.Data), len(testBody))
	}
	if m.MailOpts.Size != int64(len(testBody)) {
		t.Errorf("SIZE = %d", m.MailOpts.Size)
	}
	helos := s.Helos()
	if len(helos) < 2 {
		t.Fatalf("Helos = %v, want before and after TLS", helos)
	}
	for _, h := range helos {
		if h != testHost {
			t.Errorf("EHLO %q, want %q (all: %v)", h, testHost, helos)
		}
	}
}

func TestImplicitTLS(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{Implicit: true, RequireTLS: true, Users: map[string]string{testUser: testPass}})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.TLS = tlsmode.Implicit })
	if _, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); err != nil {
		t.Fatal(err)
	}
	if m := s.WaitMessages(t, 1, 5*time.Second)[0]; !m.TLS || m.AuthUser != testUser || m.Helo != testHost {
		t.Fatalf("message = %+v", m)
	}
}

func TestPlainToLoopback(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{NoSTARTTLS: true})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.TLS = tlsmode.None; cfg.Username, cfg.Password = "", "" })
	if _, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); err != nil {
		t.Fatal(err)
	}
	if m := s.WaitMessages(t, 1, 5*time.Second)[0]; m.TLS || string(m.Data) != testBody {
		t.Fatalf("TLS = %v", m.TLS)
	}

	if _, err := New(Config{Address: "smtp.example.net:25", TLS: tlsmode.None}); err == nil {
		t.Fatal("tls=none to a non-loopback host accepted")
	}
	if _, err := New(Config{Address: "127.0.0.1:25", Fallback: []string{"192.0.2.1:25"}, TLS: tlsmode.None}); err == nil {
		t.Fatal("tls=none to a non-loopback fallback accepted")
	}
}

func TestWrongCertificateName(t *testing.T) {
	s := strictServer(t, smtptest.Faults{TLSFail: true})
	c, _ := newClient(t, s, nil)
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageTLS)
	var he x509.HostnameError
	if !errors.As(err, &he) || e.Temporary || e.Hint == "" {
		t.Fatalf("err = %v, want a hostname error with a hint", err)
	}
	if s.AuthAttempts() != 0 || len(s.Messages()) != 0 {
		t.Fatalf("auth attempts %d, messages %d", s.AuthAttempts(), len(s.Messages()))
	}
}

func TestUnknownCA(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.RootCAs = smtptest.NewCA(t).Pool() })
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	wantErr(t, err, StageTLS)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("err = %v, want unknown authority", err)
	}
	if s.AuthAttempts() != 0 {
		t.Fatal("AUTH sent over an unverified connection")
	}
}

func TestNoSTARTTLSNeverSendsPassword(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{NoSTARTTLS: true, Users: map[string]string{testUser: testPass}})
	c, _ := newClient(t, s, nil)
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageSTARTTLS)
	if !strings.Contains(e.Hint, "implicit") {
		t.Errorf("hint = %q", e.Hint)
	}
	if s.AuthAttempts() != 0 || s.Logins() != 0 {
		t.Fatalf("credentials sent in clear: attempts %d", s.AuthAttempts())
	}
}

func TestPerRecipientReplies(t *testing.T) {
	s := strictServer(t, smtptest.Faults{RcptReply: func(r string) *smtp.SMTPError {
		switch r {
		case "gone@example.net":
			return smtptest.Reply550()
		case "busy@example.net":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case "many@example.net":
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 5, 3}, Message: "too many recipients"}
		}
		return nil
	}})
	c, _ := newClient(t, s, nil)
	out, err := c.Deliver(context.Background(), delivery("m1", "gone@example.net", "ok@example.net", "busy@example.net", "many@example.net"))
	if err != nil {
		t.Fatal(err)
	}
	if out.Rcpts[0] == nil || out.Rcpts[0].Code != 550 {
		t.Errorf("gone: %v", out.Rcpts[0])
	}
	if out.Rcpts[1] != nil {
		t.Errorf("ok: %v", out.Rcpts[1])
	}
	if out.Rcpts[2] == nil || out.Rcpts[2].Code != 452 {
		t.Errorf("busy: %v", out.Rcpts[2])
	}
	if r := out.Rcpts[3]; r == nil || r.Code != 452 || r.EnhancedCode != (smtp.EnhancedCode{4, 5, 3}) || r.Message != "too many recipients" {
		t.Errorf("552 at RCPT: %+v, want 452 4.5.3 with the text", r)
	}
	if m := s.WaitMessages(t, 1, 5*time.Second)[0]; len(m.To) != 1 || m.To[0] != "ok@example.net" {
		t.Errorf("server got %v", m.To)
	}
}

func TestAllRecipientsRejectedKeepsConnection(t *testing.T) {
	s := strictServer(t, smtptest.Faults{RcptReply: func(string) *smtp.SMTPError { return smtptest.Reply550() }})
	c, _ := newClient(t, s, nil)
	for i := 0; i < 2; i++ {
		out, err := c.Deliver(context.Background(), delivery("m", "x@example.net"))
		if err != nil || out.Rcpts[0] == nil || out.Rcpts[0].Code != 550 {
			t.Fatalf("out %v err %v", out.Rcpts, err)
		}
	}
	if s.Conns() != 1 {
		t.Errorf("Conns = %d", s.Conns())
	}
}

func TestMailAndDataReplies(t *testing.T) {
	s := strictServer(t, smtptest.Faults{DataReply: func(n int) *smtp.SMTPError {
		if n == 1 {
			return smtptest.Reply451()
		}
		return nil
	}})
	c, _ := newClient(t, s, nil)
	d := delivery("m1", "b@example.net", "c@example.net")
	out, err := c.Deliver(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out.Rcpts {
		if r == nil || r.Code != 451 {
			t.Errorf("rcpt %d: %v, want 451", i, r)
		}
	}
	if out, err = c.Deliver(context.Background(), d); err != nil || out.Rcpts[0] != nil || out.Rcpts[1] != nil {
		t.Fatalf("retry: %v %v", out.Rcpts, err)
	}

	s.SetFaults(smtptest.Faults{MailReply: func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender not allowed"}
	}})
	out, err = c.Deliver(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out.Rcpts {
		if r == nil || r.Code != 553 {
			t.Errorf("rcpt %d after MAIL 553: %v", i, r)
		}
	}
}

func TestSessionFailures(t *testing.T) {
	cases := []struct {
		name  string
		opts  smtptest.Options
		stage Stage
		code  int
	}{
		{"auth 535", smtptest.Options{RequireTLS: true, Users: map[string]string{testUser: testPass}, Faults: smtptest.Faults{AuthFail: true}}, StageAuth, 535},
		{"greeting 421", smtptest.Options{Faults: smtptest.Faults{Greeting421: true}}, StageGreeting, 421},
		{"drop mid-DATA", smtptest.Options{RequireTLS: true, Users: map[string]string{testUser: testPass}, Faults: smtptest.Faults{DropMidData: true}}, StageData, 0},
		{"421 at RCPT", smtptest.Options{Users: map[string]string{testUser: testPass}, Faults: smtptest.Faults{RcptReply: func(string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
		}}}, StageRcpt, 421},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := smtptest.New(t, tc.opts)
			c, _ := newClient(t, s, nil)
			out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
			e := wantErr(t, err, tc.stage)
			if e.Code != tc.code || !e.Temporary {
				t.Fatalf("err = %v (code %d, temporary %v)", e, e.Code, e.Temporary)
			}
			if out.Rcpts != nil || len(s.Messages()) != 0 {
				t.Fatalf("outcome %v, messages %d", out.Rcpts, len(s.Messages()))
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	addr := deadAddr(t)
	c, err := New(Config{Address: addr, Hostname: testHost, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	if e := wantErr(t, err, StageConnect); !e.Temporary || e.Hint == "" {
		t.Fatalf("err = %v", e)
	}
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestStallTimesOut(t *testing.T) {
	s := strictServer(t, smtptest.Faults{Stall: 20 * time.Second})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.Timeout = 500 * time.Millisecond })
	start := time.Now()
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageData)
	if !e.Timeout() || !e.Temporary {
		t.Fatalf("err = %v, want a timeout", e)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v with a 500ms timeout", d)
	}
}

func TestContextCancelAborts(t *testing.T) {
	s := strictServer(t, smtptest.Faults{Stall: 20 * time.Second})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.Timeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Deliver(ctx, delivery("m1", "b@example.net"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	wantErr(t, err, StageData)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestReuseOneConnection(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, nil)
	for i := 0; i < 5; i++ {
		if out, err := c.Deliver(context.Background(), delivery("m", "b@example.net")); err != nil || out.Rcpts[0] != nil {
			t.Fatalf("delivery %d: %v %v", i, out.Rcpts, err)
		}
	}
	msgs := s.WaitMessages(t, 5, 5*time.Second)
	if s.Conns() != 1 || s.Logins() != 1 {
		t.Fatalf("Conns = %d, Logins = %d, want 1 and 1", s.Conns(), s.Logins())
	}
	for _, m := range msgs {
		if m.Conn != 1 || m.Helo != testHost {
			t.Errorf("message on conn %d helo %q", m.Conn, m.Helo)
		}
	}
	for _, h := range s.Helos() {
		if h != testHost {
			t.Errorf("EHLO %q", h)
		}
	}

	// The server drops the idle connection: the next delivery redials.
	s.Stop()
	s.Start()
	if _, err := c.Deliver(context.Background(), delivery("m", "b@example.net")); err != nil {
		t.Fatalf("after server restart: %v", err)
	}
	if s.Conns() != 2 {
		t.Fatalf("Conns = %d, want 2", s.Conns())
	}
}

func TestMaxConnsUnderParallelLoad(t *testing.T) {
	s := strictServer(t, smtptest.Faults{Stall: 100 * time.Millisecond})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.MaxConns = 2 })
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Deliver(context.Background(), delivery("m", "b@example.net"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.WaitMessages(t, 8, 5*time.Second)
	if n := s.Conns(); n > 2 || n < 1 {
		t.Fatalf("Conns = %d with MaxConns 2", n)
	}
}

func TestFallback(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	primary := deadAddr(t)
	c, logs := newClient(t, s, func(cfg *Config) {
		cfg.Address = primary
		cfg.Fallback = []string{s.Addr()}
	})
	out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	if err != nil || out.Rcpts[0] != nil {
		t.Fatal(out.Rcpts, err)
	}
	_, port, _ := net.SplitHostPort(s.Addr())
	if !strings.HasSuffix(out.Relay, ":"+port) {
		t.Fatalf("Relay = %q, want the fallback %s", out.Relay, s.Addr())
	}
	s.WaitMessages(t, 1, 5*time.Second)
	if !strings.Contains(logs.String(), "fallback=true") {
		t.Errorf("no log line naming the fallback:\n%s", logs)
	}

	// Both down: the last relay's error, and nothing fails.
	s.Stop()
	_, err = c.Deliver(context.Background(), delivery("m2", "b@example.net"))
	if e := wantErr(t, err, StageConnect); e.Addr != s.Addr() {
		t.Fatalf("Addr = %s", e.Addr)
	}
}

func TestDSNPassedOn(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{RequireTLS: true, DSN: true, Users: map[string]string{testUser: testPass}})
	c, _ := newClient(t, s, nil)
	d := delivery("m1", "b@example.net")
	d.Ret, d.EnvID = "HDRS", "env-1"
	d.Rcpts[0].Notify = []string{"FAILURE", "DELAY"}
	d.Rcpts[0].ORcpt = "rfc822;orig@example.net"
	out, err := c.Deliver(context.Background(), d)
	if err != nil || !out.DSNPassed {
		t.Fatalf("err %v DSNPassed %v", err, out.DSNPassed)
	}
	m := s.WaitMessages(t, 1, 5*time.Second)[0]
	if m.MailOpts.Return != smtp.DSNReturnHeaders || m.MailOpts.EnvelopeID != "env-1" {
		t.Errorf("MAIL opts %+v", m.MailOpts)
	}
	r := m.RcptOpts[0]
	if r == nil || len(r.Notify) != 2 || r.OriginalRecipient != "orig@example.net" {
		t.Errorf("RCPT opts %+v", r)
	}

	// Without DSN on the server: nothing passed, DSNPassed false.
	s2 := strictServer(t, smtptest.Faults{})
	c2, _ := newClient(t, s2, nil)
	if out, err := c2.Deliver(context.Background(), d); err != nil || out.DSNPassed {
		t.Fatalf("err %v DSNPassed %v", err, out.DSNPassed)
	}
}

func TestProbe(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, nil)
	if err := c.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Logins() != 1 || len(s.Messages()) != 0 {
		t.Fatalf("Logins %d messages %d", s.Logins(), len(s.Messages()))
	}
	bad, _ := newClient(t, s, func(cfg *Config) { cfg.Password = "wrong" })
	err := bad.Probe(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Stage != StageAuth || e.Code != 535 || !strings.Contains(e.Error(), "password_file") {
		t.Fatalf("Probe = %v", err)
	}
}

func TestOpenFailureSendsNothing(t *testing.T) {
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, nil)
	d := delivery("m1", "b@example.net")
	d.Open = func() (io.ReadCloser, error) { return nil, errors.New("disk on fire") }
	_, err := c.Deliver(context.Background(), d)
	if err == nil || len(s.Messages()) != 0 {
		t.Fatalf("err %v", err)
	}
	_ = envelope.Outcome{}
}

// recordingDialer keeps every byte the client writes (cleartext only),
// and each write.
type recordingDialer struct {
	mu     sync.Mutex
	out    bytes.Buffer
	writes []string
}

// wrote reports whether one write carried all of parts.
func (r *recordingDialer) wrote(parts ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.writes {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

func (r *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, r: r}, nil
}

func (r *recordingDialer) commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cmds []string
	for _, l := range strings.Split(r.out.String(), "\r\n") {
		if verb, _, _ := strings.Cut(l, " "); verb == "EHLO" || verb == "RSET" || verb == "MAIL" || verb == "DATA" {
			cmds = append(cmds, verb)
		}
	}
	return cmds
}

type recordingConn struct {
	net.Conn
	r *recordingDialer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	c.r.out.Write(p)
	c.r.writes = append(c.r.writes, string(p))
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

// TestRSETOnlyAfterOpenTransaction: on a reused connection, a transaction
// that ended with a reply to the final dot is followed directly by MAIL
// (RFC 5321 §4.1.1.4: that reply clears the server's buffers); one left
// open (no recipient accepted) is followed by RSET and then MAIL: never a
// second EHLO on an established session (OpenSMTPD refuses it with 503,
// issue 20). The server offers PIPELINING: MAIL, RCPT and DATA go in
// one write (RFC 2920), and DATA is sent even when the RCPT is refused.
func TestRSETOnlyAfterOpenTransaction(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{NoSTARTTLS: true, Faults: smtptest.Faults{
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "bad") {
				return smtptest.Reply550()
			}
			return nil
		},
	}})
	rec := &recordingDialer{}
	c, _ := newClient(t, s, func(cfg *Config) {
		cfg.TLS = tlsmode.None
		cfg.Username, cfg.Password = "", ""
		cfg.MaxConns = 1
		cfg.Dialer = rec
	})
	for i, rcpt := range []string{"a@example.net", "b@example.net", "bad@example.net", "c@example.net"} {
		if _, err := c.Deliver(context.Background(), delivery("m", rcpt)); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	got := strings.Join(rec.commands(), " ")
	want := "EHLO MAIL DATA MAIL DATA MAIL DATA RSET MAIL DATA"
	if got != want {
		t.Errorf("commands on the wire:\n got %s\nwant %s", got, want)
	}
	if !rec.wrote("MAIL FROM:<", "RCPT TO:<a@example.net>", "DATA\r\n") {
		t.Error("MAIL, RCPT and DATA were not pipelined in one write")
	}
	if !rec.wrote("0123456789abcdef\r\n.\r\n") {
		t.Error("the body and the final dot were not sent in one write")
	}
	if s.Conns() != 1 {
		t.Errorf("Conns = %d, want 1", s.Conns())
	}
}
