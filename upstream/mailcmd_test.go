package upstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
	"relayd/internal/tlsmode"
)

// BODY=8BITMIME is declared only for a message with 8-bit octets (or an old
// queue entry that does not say), on the pipelined path and on go-smtp's
// (forced here by DSN parameters); connections are reused across both kinds.
func TestBodyParamOnlyFor8bit(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{RequireTLS: true, DSN: true, Users: map[string]string{testUser: testPass}})
	c, _ := newClient(t, s, nil)
	cases := []struct {
		body, ret, envid, want string
	}{
		{"7BIT", "", "", ""},
		{"8BITMIME", "", "", "8BITMIME"},
		{"", "", "", "8BITMIME"},
		{"7BIT", "HDRS", "env+1=x", ""},
		{"8BITMIME", "FULL", "", "8BITMIME"},
		{"7BIT", "FULL", "e2", ""},
	}
	for i, tc := range cases {
		d := delivery("m", "b@example.net")
		d.Body, d.Ret, d.EnvID = tc.body, tc.ret, tc.envid
		out, err := c.Deliver(context.Background(), d)
		if err != nil || out.Rcpts[0] != nil {
			t.Fatalf("case %d: %v %v", i, err, out.Rcpts)
		}
		m := s.WaitMessages(t, i+1, 5*time.Second)[i]
		t.Logf("case %d %+v", i, m.MailOpts)
		if got := string(m.MailOpts.Body); got != tc.want {
			t.Errorf("case %d (Body %q): BODY=%q, want %q", i, tc.body, got, tc.want)
		}
		if tc.ret != "" && (string(m.MailOpts.Return) != tc.ret || m.MailOpts.EnvelopeID != tc.envid || m.MailOpts.Size == 0) {
			t.Errorf("case %d: MAIL opts %+v", i, m.MailOpts)
		}
	}
	// A refused MAIL on the raw path is the server's reply, for every
	// recipient; the next transaction (after RSET and EHLO) works.
	s.SetFaults(smtptest.Faults{MailReply: func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
	}})
	d := delivery("m", "b@example.net")
	d.Body, d.Ret = "7BIT", "HDRS"
	out, err := c.Deliver(context.Background(), d)
	if err != nil || out.Rcpts[0] == nil || out.Rcpts[0].Code != 550 {
		t.Fatalf("refused MAIL: %v %+v", err, out.Rcpts)
	}
	s.SetFaults(smtptest.Faults{})
	if out, err := c.Deliver(context.Background(), d); err != nil || out.Rcpts[0] != nil {
		t.Fatalf("after a refused MAIL: %v %v", err, out.Rcpts)
	}
}

func TestXtext(t *testing.T) {
	if got := xtext("a+b=c d"); got != "a+2Bb+3Dc+20d" {
		t.Errorf("xtext = %q", got)
	}
}

// SevenBitOnly says what the smarthost's EHLO said of 8BITMIME, once a
// transaction has asked; until then it is false.
func TestSevenBitOnly(t *testing.T) {
	s8 := strictServer(t, smtptest.Faults{})
	c8, _ := newClient(t, s8, nil)
	if c8.SevenBitOnly() {
		t.Error("SevenBitOnly before any transaction")
	}
	if _, err := c8.Deliver(context.Background(), delivery("m", "b@example.net")); err != nil {
		t.Fatal(err)
	}
	if c8.SevenBitOnly() {
		t.Error("SevenBitOnly with a server offering 8BITMIME")
	}
	s7 := smtptest.NewSevenBit(t)
	c7, err := New(Config{Address: s7.Addr, Hostname: testHost, TLS: tlsmode.None, Timeout: 5 * time.Second, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c7.Close()
	d := delivery("m", "b@example.net")
	d.Body = "8BITMIME"
	if out, err := c7.Deliver(context.Background(), d); err != nil || out.Rcpts[0] != nil {
		t.Fatalf("Deliver: %v %v", err, out.Rcpts)
	}
	if !c7.SevenBitOnly() {
		t.Error("SevenBitOnly false with a server without 8BITMIME")
	}
	if m := s7.Messages(); len(m) != 1 || strings.Contains(m[0].Mail, "BODY=") {
		t.Errorf("MAIL to a 7-bit server: %+v", m)
	}
}
