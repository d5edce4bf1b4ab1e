package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"relayd/auth"
	"relayd/cleanup"
	"relayd/internal/smtptest"
)

// fakeIntake records submissions; it reads the whole body (as cleanup
// streams it) and passes read errors through as cleanup does.
type fakeIntake struct {
	mu   sync.Mutex
	subs []*cleanup.Submission
	data []string
}

func (f *fakeIntake) Submit(_ context.Context, sub *cleanup.Submission, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	if sub.FromAllowed != nil {
		for _, line := range strings.Split(string(b), "\r\n") {
			if a, ok := strings.CutPrefix(line, "From: "); ok && !sub.FromAllowed(a) {
				return "", cleanup.ErrFromDenied
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, sub)
	f.data = append(f.data, string(b))
	return fmt.Sprintf("ID%d", len(f.subs)), nil
}

func (f *fakeIntake) Sender(a string) (string, *smtp.SMTPError)    { return cleanup.ParseAddress(a) }
func (f *fakeIntake) Recipient(a string) (string, *smtp.SMTPError) { return cleanup.ParseAddress(a) }

func (f *fakeIntake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

type env struct {
	addr   string
	in     *fakeIntake
	client *tls.Config
	srv    *Server
}

// serve starts one listener of mode on 127.0.0.1:0 with user "app1"
// (password "right", senders *@example.com) and a generated certificate.
func serve(t *testing.T, mode Mode, mod func(*Config)) *env {
	t.Helper()
	ca := smtptest.NewCA(t)
	cert := ca.Leaf(t, "localhost", "127.0.0.1")
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	a := auth.New([]auth.User{{Name: "app1", PasswordHash: string(hash), Senders: []string{"*@example.com"}}},
		auth.Options{MaxFailures: 3, Sleep: func(time.Duration) {}})
	cfg := Config{
		Hostname: "relay.test", Mode: mode, IdleTimeout: 5 * time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Settings: Settings{RelayNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			MaxMessageBytes: 1 << 20, MaxRecipients: 5, Auth: a},
	}
	if mod != nil {
		mod(&cfg)
	}
	in := &fakeIntake{}
	s := New(cfg, in)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return &env{addr: l.Addr().String(), in: in, srv: s,
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func (e *env) startTLS(t *testing.T) *smtp.Client {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, e.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawEHLO returns the EHLO reply lines of a fresh plain connection.
func rawEHLO(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	br := bufio.NewReader(conn)
	readReply(t, conn, br)
	fmt.Fprintf(conn, "EHLO client.test\r\n")
	_, text := readReply(t, conn, br)
	return conn, br, text
}

func readReply(t *testing.T, conn net.Conn, br *bufio.Reader) (int, string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			return 0, sb.String()
		}
		if len(line) >= 4 && line[3] != '-' {
			n, _ := strconv.Atoi(line[:3])
			return n, sb.String()
		}
	}
}

func TestSubmissionNeedsTLSThenAuth(t *testing.T) {
	e := serve(t, Submission, nil)
	conn, br, ehlo := rawEHLO(t, e.addr)
	if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO in clear:\n%s", ehlo)
	}
	fmt.Fprintf(conn, "MAIL FROM:<app1@example.com>\r\n")
	if n, text := readReply(t, conn, br); n != 530 || !strings.Contains(text, "5.7.0") {
		t.Errorf("MAIL before AUTH: %s", text)
	}

	c := e.startTLS(t)
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Fatalf("AUTH after TLS: %v %q", ok, mechs)
	}
	if err := c.Mail("app1@example.com", nil); code(err) != 530 {
		t.Errorf("MAIL after TLS before AUTH: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "app1", "nope")); code(err) != 535 {
		t.Errorf("bad password: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("other", "app1", "right")); code(err) != 535 {
		t.Errorf("PLAIN with a different authorization identity: %v", err)
	}
	if err := c.Auth(sasl.NewLoginClient("app1", "right")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if err := c.Mail("boss@example.net", nil); code(err) != 553 {
		t.Errorf("foreign sender: %v, want 553", err)
	}
	c.Reset()
	err := c.SendMail("app1@example.com", []string{"bob@example.org"}, strings.NewReader("From: boss@example.net\r\n\r\nx\r\n"))
	if code(err) != 553 {
		t.Errorf("foreign header From: %v, want 553", err)
	}
	c.Reset()
	if err := c.SendMail("APP1@Example.COM", []string{"bob@example.org"}, strings.NewReader("From: app1@example.com\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("own sender: %v", err)
	}
	sub := e.in.subs[0]
	if sub.Proto != "ESMTPSA" || sub.AuthUser != "app1" {
		t.Errorf("proto %q user %q, want ESMTPSA app1", sub.Proto, sub.AuthUser)
	}
}

func TestAuthFailureCapPerIP(t *testing.T) {
	e := serve(t, Submission, nil)
	c := e.startTLS(t)
	for i := 0; i < 3; i++ {
		if err := c.Auth(sasl.NewPlainClient("", "app1", "wrong")); code(err) != 535 {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Over the cap (3): refused without looking at the password.
	c2 := e.startTLS(t)
	err := c2.Auth(sasl.NewPlainClient("", "app1", "right"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 421 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("right password from a capped IP: %v, want 421 4.7.0", err)
	}
}

func TestImplicitTLS(t *testing.T) {
	e := serve(t, Submissions, nil)
	c, err := smtp.DialTLS(e.addr, e.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("lan.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("app1@example.com", nil); code(err) != 530 {
		t.Errorf("MAIL before AUTH: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "app1", "right")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("app1@example.com", []string{"bob@example.org"}, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if e.in.count() != 1 || e.in.subs[0].Proto != "ESMTPSA" {
		t.Errorf("submission not recorded as ESMTPSA")
	}
}

func TestRelayNetworks(t *testing.T) {
	e := serve(t, Relay, nil)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.Hello("outside.test")
	if ok, _ := c.Extension("AUTH"); ok {
		t.Errorf("AUTH offered before TLS on the relay port")
	}
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"victim@example.org", "@relay.test:victim@example.org", "\"victim@example.org\"", "victim%example.org@relay.test"} {
		if err := c.Rcpt(to, nil); code(err)/100 != 5 {
			t.Errorf("RCPT %s from outside: %v, want 5xx", to, err)
		}
	}
	// Inside relay_networks: accepted; over max_recipients: 452.
	c2, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Hello("inside.test")
	c2.Mail("a@example.com", nil)
	var last error
	for i := 0; i < 6; i++ {
		last = c2.Rcpt(fmt.Sprintf("r%d@example.org", i), nil)
	}
	if code(last) != 452 {
		t.Errorf("6th recipient: %v, want 452", last)
	}
}

func TestConnectionLimits(t *testing.T) {
	e := serve(t, Relay, func(c *Config) { c.MaxConnsPerIP = 2; c.MaxConns = 3 })
	var held []net.Conn
	for i := 0; i < 2; i++ {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		if n, _ := readReply(t, conn, br); n != 220 {
			t.Fatalf("connection %d not greeted", i)
		}
		held = append(held, conn)
	}
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n, text := readReply(t, conn, bufio.NewReader(conn)); n != 421 || !strings.Contains(text, "4.7.0") {
		t.Errorf("3rd connection from one IP: %q, want 421 4.7.0", text)
	}
	// Another IP still gets in (total 3), a fourth connection does not.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	if c3, err := d.Dial("tcp", e.addr); err == nil {
		defer c3.Close()
		if n, _ := readReply(t, c3, bufio.NewReader(c3)); n != 220 {
			t.Errorf("other IP refused")
		}
		d4 := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}
		c4, err := d4.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c4.Close()
		if n, text := readReply(t, c4, bufio.NewReader(c4)); n != 421 {
			t.Errorf("over the total: %q, want 421", text)
		}
	}
	// Closing frees the slot.
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := readReply(t, conn, bufio.NewReader(conn))
		conn.Close()
		if n == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot never freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIdleClientDropped(t *testing.T) {
	e := serve(t, Relay, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	conn, br, _ := rawEHLO(t, e.addr)
	fmt.Fprintf(conn, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: x\r\n")
	t0 := time.Now()
	for i := 0; i < 10; i++ {
		if n, _ := readReply(t, conn, br); n == 0 {
			break
		}
	}
	if d := time.Since(t0); d > 8*time.Second {
		t.Errorf("idle client held for %v", d)
	}
	if e.in.count() != 0 {
		t.Errorf("partial message submitted")
	}
}
