package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const body = "From: a@example.com\r\nTo: b@example.net\r\nSubject: t\r\n\r\nhello\r\n"

func tlsConf(s *Server) *tls.Config {
	return &tls.Config{RootCAs: s.CA().Pool(), ServerName: "localhost"}
}

// dial opens a STARTTLS session and authenticates when user is set.
func dial(t *testing.T, s *Server, user, pass string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(s.Addr(), tlsConf(s))
	if err != nil {
		t.Fatalf("DialStartTLS: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example"); err != nil {
		t.Fatalf("Hello: %v", err)
	}
	if user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			t.Fatalf("Auth: %v", err)
		}
	}
	return c
}

func send(c *smtp.Client, to ...string) error {
	if err := c.Mail("a@example.com", nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	return w.Close()
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestDeliveryOverSTARTTLSWithAuth(t *testing.T) {
	s := New(t, Options{RequireTLS: true, Users: map[string]string{"u": "p"}})
	c := dial(t, s, "u", "p")
	if err := send(c, "b@example.net"); err != nil {
		t.Fatalf("send: %v", err)
	}
	m := s.WaitMessages(t, 1, 5*time.Second)[0]
	if !m.TLS || m.AuthUser != "u" || m.Helo != "client.example" || m.Conn != 1 {
		t.Errorf("message = %+v", m)
	}
	if string(m.Data) != body || m.From != "a@example.com" || len(m.To) != 1 || m.To[0] != "b@example.net" {
		t.Errorf("envelope/data = %q %q %q", m.From, m.To, m.Data)
	}
	if got := strings.Join(s.Helos(), ","); got != "localhost,client.example" {
		t.Errorf("Helos = %s", got)
	}
	if s.Logins() != 1 || s.Conns() != 1 {
		t.Errorf("Logins=%d Conns=%d", s.Logins(), s.Conns())
	}
}

func TestLoginMechanism(t *testing.T) {
	s := New(t, Options{RequireTLS: true, Users: map[string]string{"u": "p"}})
	c := dial(t, s, "", "")
	if err := c.Auth(sasl.NewLoginClient("u", "p")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if s.Logins() != 1 {
		t.Fatalf("Logins = %d", s.Logins())
	}
}

func TestRequireTLSAndAuth(t *testing.T) {
	s := New(t, Options{RequireTLS: true, Users: map[string]string{"u": "p"}})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised before TLS")
	}
	if err := c.Mail("a@example.com", nil); code(err) != 530 {
		t.Errorf("MAIL before TLS: %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); code(err) != 530 {
		t.Errorf("AUTH before TLS: %v, want 530", err)
	}

	c2 := dial(t, s, "", "")
	if err := c2.Mail("a@example.com", nil); code(err) != 530 {
		t.Errorf("MAIL before AUTH: %v, want 530", err)
	}
	if s.Logins() != 0 {
		t.Errorf("Logins = %d", s.Logins())
	}
}

func TestAuthFail(t *testing.T) {
	s := New(t, Options{RequireTLS: true, Users: map[string]string{"u": "p"}, Faults: Faults{AuthFail: true}})
	c := dial(t, s, "", "")
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); code(err) != 535 {
		t.Fatalf("AUTH: %v, want 535", err)
	}
	if s.Logins() != 0 || s.AuthAttempts() != 1 {
		t.Fatalf("Logins=%d attempts=%d", s.Logins(), s.AuthAttempts())
	}
}

func TestTLSFailAndImplicit(t *testing.T) {
	s := New(t, Options{Faults: Faults{TLSFail: true}})
	if c, err := smtp.DialStartTLS(s.Addr(), tlsConf(s)); err == nil {
		// go-smtp handshakes lazily: force it.
		err = c.Hello("x")
		c.Close()
		if err == nil {
			t.Fatal("handshake with wrong-name certificate succeeded")
		}
	}
	s.SetFaults(Faults{})
	c := dial(t, s, "", "")
	c.Close()

	imp := New(t, Options{Implicit: true})
	ic, err := smtp.DialTLS(imp.Addr(), tlsConf(imp))
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := send(ic, "b@example.net"); err != nil {
		t.Fatal(err)
	}
	if m := imp.WaitMessages(t, 1, 5*time.Second)[0]; !m.TLS {
		t.Error("implicit TLS message not marked TLS")
	}
}

func TestGreeting421(t *testing.T) {
	s := New(t, Options{Faults: Faults{Greeting421: true}})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("x"); code(err) != 421 {
		t.Fatalf("greeting: %v, want 421", err)
	}
}

func TestRcptAndDataReplies(t *testing.T) {
	s := New(t, Options{Faults: Faults{
		RcptReply: func(r string) *smtp.SMTPError {
			if r == "bad@example.net" {
				return Reply550()
			}
			return nil
		},
		DataReply: func(n int) *smtp.SMTPError {
			if n == 1 {
				return Reply451()
			}
			return nil
		},
	}})
	c := dial(t, s, "", "")
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bad@example.net", nil); code(err) != 550 {
		t.Fatalf("RCPT bad: %v", err)
	}
	if err := c.Rcpt("good@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	if err := w.Close(); code(err) != 451 {
		t.Fatalf("first DATA: %v, want 451", err)
	}
	if err := send(c, "good@example.net"); err != nil {
		t.Fatalf("second DATA: %v", err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Fatalf("messages = %d", n)
	}
}

func TestFailFirst(t *testing.T) {
	s := New(t, Options{Faults: Faults{FailFirst: 2}})
	c := dial(t, s, "", "")
	for i := 0; i < 2; i++ {
		if err := send(c, "b@example.net"); code(err) != 451 {
			t.Fatalf("try %d: %v, want 451", i, err)
		}
	}
	if err := send(c, "b@example.net"); err != nil {
		t.Fatal(err)
	}
}

func TestDropMidData(t *testing.T) {
	s := New(t, Options{Faults: Faults{DropMidData: true}})
	c := dial(t, s, "", "")
	err := send(c, "b@example.net")
	if err == nil || code(err) != 0 {
		t.Fatalf("send = %v, want a connection error", err)
	}
	if len(s.Messages()) != 0 {
		t.Fatal("message recorded")
	}
}

func TestStall(t *testing.T) {
	s := New(t, Options{Faults: Faults{Stall: 10 * time.Second}})
	c := dial(t, s, "", "")
	c.SubmissionTimeout = 300 * time.Millisecond
	start := time.Now()
	err := send(c, "b@example.net")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("send = %v, want timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestStopStart(t *testing.T) {
	s := New(t, Options{})
	addr := s.Addr()
	c := dial(t, s, "", "")
	s.Stop()
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("dial succeeded while stopped")
	}
	if err := c.Noop(); err == nil {
		t.Fatal("connection survived Stop")
	}
	s.Start()
	if s.Addr() != addr {
		t.Fatal("address changed")
	}
	c2 := dial(t, s, "", "")
	if err := send(c2, "b@example.net"); err != nil {
		t.Fatal(err)
	}
	if got := s.WaitMessages(t, 1, 5*time.Second)[0].Conn; got != 2 {
		t.Fatalf("Conn = %d, want 2", got)
	}
}

func TestDSNOptionsRecorded(t *testing.T) {
	s := New(t, Options{DSN: true})
	c := dial(t, s, "", "")
	if err := c.Mail("a@example.com", &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.net", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "b@example.net"}); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	w.Write([]byte(body))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m := s.WaitMessages(t, 1, 5*time.Second)[0]
	if m.MailOpts.Return != smtp.DSNReturnHeaders || m.MailOpts.EnvelopeID != "e1" ||
		len(m.RcptOpts) != 1 || m.RcptOpts[0].OriginalRecipient != "b@example.net" || !bytes.Equal(m.Data, []byte(body)) {
		t.Fatalf("opts = %+v %+v", m.MailOpts, m.RcptOpts[0])
	}
}

func TestMessageReplySeesEnvelope(t *testing.T) {
	s := New(t, Options{Faults: Faults{
		MessageReply: func(m *Message) *smtp.SMTPError {
			if m.From != "" && bytes.Contains(m.Data, []byte("hello")) {
				return Reply451()
			}
			return nil
		},
	}})
	c := dial(t, s, "", "")
	if err := send(c, "b@example.net"); code(err) != 451 {
		t.Fatalf("from a@example.com: %v, want 451", err)
	}
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	if err := w.Close(); err != nil {
		t.Fatalf("null sender: %v, want 250", err)
	}
	if m := s.Messages(); len(m) != 1 || m[0].From != "" {
		t.Fatalf("messages = %+v", m)
	}
}

func TestSetUsersChangesPassword(t *testing.T) {
	s := New(t, Options{RequireTLS: true, Users: map[string]string{"u": "old"}})
	dial(t, s, "u", "old")
	s.SetUsers(map[string]string{"u": "new"})
	c := dial(t, s, "", "")
	if err := c.Auth(sasl.NewPlainClient("", "u", "old")); code(err) != 535 {
		t.Fatalf("old password after SetUsers: %v, want 535", err)
	}
	dial(t, s, "u", "new")
	if s.Logins() != 2 {
		t.Fatalf("Logins=%d, want 2", s.Logins())
	}
}
