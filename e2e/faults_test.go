package e2e

// Upstream faults: for each way a smarthost can fail temporarily, relayd
// must keep the mail (no loss), never bounce it (a temporary fault is not a
// failure), and retry a message whose DATA was not acknowledged (a
// duplicate is acceptable, loss is not).

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

func reply(code int, enh smtp.EnhancedCode) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "smtptest: scripted"}
}

// faultRelay starts a smarthost with f and relayd with upstream.timeout 2s.
func faultRelay(t *testing.T, f smtptest.Faults) (*relayd, *smtptest.Server) {
	t.Helper()
	sh := smarthost(t, f)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "[rewrite]\nadmin = \"admin@example.com\"", "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte(`timeout = "5s"`), []byte(`timeout = "2s"`), 1), 0o644)
	return start(t, dir, cfg), sh
}

// tagged is one test message: its body carries a unique tag.
type tagged struct {
	tag, from string
	to        []string
}

func (m tagged) send(t *testing.T, r *relayd) {
	t.Helper()
	body := "Subject: " + m.tag + "\r\n\r\n" + m.tag + "\r\n"
	if err := r.send(t, m.from, m.to, body); err != nil {
		t.Fatalf("%s not queued: %v", m.tag, err)
	}
}

// copies counts deliveries of tag to rcpt at the smarthost.
func copies(sh *smtptest.Server, tag, rcpt string) int {
	n := 0
	for _, m := range sh.Messages() {
		if bytes.Contains(m.Data, []byte("\r\n\r\n"+tag+"\r\n")) {
			for _, to := range m.To {
				if to == rcpt {
					n++
				}
			}
		}
	}
	return n
}

// waitAll waits until every message reached every recipient at least once.
func waitAll(t *testing.T, r *relayd, sh *smtptest.Server, msgs []tagged, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, m := range msgs {
			for _, to := range m.to {
				if copies(sh, m.tag, to) == 0 {
					missing = append(missing, m.tag+"->"+to)
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lost: %v\n%s", missing, r.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noBounce checks that nothing failed, expired or was bounced.
func noBounce(t *testing.T, r *relayd, sh *smtptest.Server) {
	t.Helper()
	logs := r.logs()
	for _, s := range []string{"status=failed", "status=bounced", "status=expired"} {
		if strings.Contains(logs, s) {
			t.Errorf("a temporary fault caused %s:\n%s", s, logs)
		}
	}
	for _, m := range sh.Messages() {
		if m.From == "" {
			t.Errorf("a notice was sent for a temporary fault: %q", m.Data)
		}
	}
}

// TestUpstreamPerCommandFaults scripts 451 and 452 at MAIL, RCPT and after
// DATA, each for its own message, on one smarthost and one relayd.
func TestUpstreamPerCommandFaults(t *testing.T) {
	temp := map[string]*smtp.SMTPError{
		"mail451@example.com": reply(451, smtp.EnhancedCode{4, 3, 0}),
		"mail452@example.com": reply(452, smtp.EnhancedCode{4, 3, 1}),
		"rcpt451@example.org": reply(451, smtp.EnhancedCode{4, 3, 0}),
		"rcpt452@example.org": reply(452, smtp.EnhancedCode{4, 2, 2}),
		"data451@example.com": reply(451, smtp.EnhancedCode{4, 3, 0}),
		"data452@example.com": reply(452, smtp.EnhancedCode{4, 3, 1}),
	}
	f := smtptest.Faults{
		MailReply: func(from string) *smtp.SMTPError { return temp[from] },
		RcptReply: func(rcpt string) *smtp.SMTPError { return temp[rcpt] },
		MessageReply: func(m *smtptest.Message) *smtp.SMTPError {
			return temp[m.From]
		},
	}
	r, sh := faultRelay(t, f)
	msgs := []tagged{
		{"pc-mail451", "mail451@example.com", []string{"a@example.org"}},
		{"pc-mail452", "mail452@example.com", []string{"a@example.org"}},
		{"pc-rcpt451", "app@example.com", []string{"rcpt451@example.org"}},
		// One recipient deferred, the other delivered now.
		{"pc-rcpt452", "app@example.com", []string{"rcpt452@example.org", "ok@example.org"}},
		{"pc-data451", "data451@example.com", []string{"a@example.org"}},
		{"pc-data452", "data452@example.com", []string{"a@example.org"}},
	}
	for _, m := range msgs {
		m.send(t, r)
	}
	waitAll(t, r, sh, []tagged{{"pc-rcpt452", "", []string{"ok@example.org"}}}, 20*time.Second)
	time.Sleep(3 * time.Second) // a few retry rounds (backoff 1-2s)
	for _, m := range msgs {
		for _, to := range m.to {
			if to != "ok@example.org" && copies(sh, m.tag, to) != 0 {
				t.Errorf("%s delivered to %s despite the fault", m.tag, to)
			}
		}
	}
	if n := strings.Count(r.logs(), "status=deferred"); n < len(msgs) {
		t.Errorf("%d deferrals logged, want at least %d", n, len(msgs))
	}
	noBounce(t, r, sh)
	sh.SetFaults(smtptest.Faults{})
	waitAll(t, r, sh, msgs, 30*time.Second)
	noBounce(t, r, sh)
	if n := copies(sh, "pc-rcpt452", "ok@example.org"); n != 1 {
		t.Errorf("the recipient accepted at once got %d copies", n)
	}
}

// TestUpstreamSessionFaults: faults that hit the whole session.
func TestUpstreamSessionFaults(t *testing.T) {
	cases := []struct {
		name string
		f    smtptest.Faults
		// retried: the smarthost recorded a copy whose DATA relayd never
		// saw acknowledged, so a retry must produce a second copy.
		retried bool
		// clears: the fault goes away by itself (FailFirst).
		clears bool
	}{
		{name: "greeting421", f: smtptest.Faults{Greeting421: true}},
		{name: "auth535", f: smtptest.Faults{AuthFail: true}},
		{name: "tls-handshake", f: smtptest.Faults{TLSFail: true}},
		{name: "drop-mid-data", f: smtptest.Faults{DropMidData: true}},
		{name: "stall", f: smtptest.Faults{Stall: 4 * time.Second}, retried: true},
		{name: "accept-after-3", f: smtptest.Faults{FailFirst: 3}, clears: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, sh := faultRelay(t, tc.f)
			msgs := []tagged{
				{tc.name + "-1", "app@example.com", []string{"bob@example.org"}},
				{tc.name + "-2", "app@example.com", []string{"carol@example.org", "dave@example.org"}},
			}
			for _, m := range msgs {
				m.send(t, r)
			}
			r.waitLog(t, `status=deferred`, 20*time.Second)
			if !tc.clears {
				time.Sleep(2 * time.Second)
				if !tc.retried && len(sh.Messages()) != 0 {
					t.Errorf("delivered despite %s", tc.name)
				}
				noBounce(t, r, sh)
				sh.SetFaults(smtptest.Faults{})
			}
			waitAll(t, r, sh, msgs, 40*time.Second)
			noBounce(t, r, sh)
			if tc.retried {
				deadline := time.Now().Add(20 * time.Second)
				for copies(sh, msgs[0].tag, "bob@example.org") < 2 {
					if time.Now().After(deadline) {
						t.Fatalf("unacknowledged DATA not retried:\n%s", r.logs())
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			dups := 0
			for _, m := range msgs {
				for _, to := range m.to {
					dups += copies(sh, m.tag, to) - 1
				}
			}
			t.Logf("%s: delivered all, %d duplicate(s), %d deferral(s) logged", tc.name, dups,
				strings.Count(r.logs(), "status=deferred"))
		})
	}
}
