package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

// TestWrongPasswordThenReload (issue 20): with a wrong smarthost password,
// five queued messages cost one failed AUTH, not five, and are deferred,
// never bounced; after the admin fixes the password and reloads, the
// deferred mail goes at once, not at each message's retry ten minutes on.
func TestWrongPasswordThenReload(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	b, _ := os.ReadFile(cfg)
	text := strings.Replace(string(b), "min_backoff = \"1s\"\nmax_backoff = \"2s\"", "min_backoff = \"10m\"\nmax_backoff = \"1h\"", 1)
	if text == string(b) {
		t.Fatal("config layout changed: min_backoff not found")
	}
	os.WriteFile(cfg, []byte(text), 0o644)
	secret := filepath.Join(dir, "smarthost.secret")
	os.WriteFile(secret, []byte("wrong pass\n"), 0o600)
	r := start(t, dir, cfg)
	for i := range 5 {
		msg := fmt.Sprintf("From: app@example.com\r\nTo: bob@example.org\r\nSubject: m%d\r\n\r\nbody %d\r\n", i, i)
		if err := r.send(t, "app@example.com", []string{"bob@example.org"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	r.waitLog(t, `rejected the credentials: no new login`, 20*time.Second)
	time.Sleep(time.Second) // the other attempts, if any, have happened
	if n := sh.AuthAttempts(); n != 1 {
		t.Errorf("%d AUTH attempts for 5 messages with a wrong password, want 1", n)
	}
	if len(sh.Messages()) != 0 {
		t.Fatal("delivered with a wrong password?")
	}
	os.WriteFile(secret, []byte("s3cret pass\n"), 0o600)
	r.cmd.Process.Signal(syscall.SIGHUP)
	r.waitLog(t, `configuration reloaded`, 20*time.Second)
	sh.WaitMessages(t, 5, 30*time.Second)
	logs := r.logs()
	for _, bad := range []string{"status=failed", "status=bounced", "smarthost unreachable"} {
		if strings.Contains(logs, bad) {
			t.Errorf("log has %q:\n%s", bad, logs)
		}
	}
	if !strings.Contains(logs, "deferred mail is due now") {
		t.Errorf("no instant-drain log line")
	}
}

// TestNullSenderRefused (issue 20 item 6): a smarthost that refuses
// MAIL FROM:<> (Amazon SES answers 501). With upstream.null_sender the
// bounce goes with that sender; without it, the failed bounce's copy goes
// to rewrite.admin from the admin's own address, and the log says why.
// Nothing loops. Before, the admin copy went with <> too and was dropped.
func TestNullSenderRefused(t *testing.T) {
	for _, nullSender := range []string{"", "bounces@example.com"} {
		t.Run("null_sender="+nullSender, func(t *testing.T) {
			sh := smarthost(t, smtptest.Faults{
				MailReply: func(from string) *smtp.SMTPError {
					if from == "" {
						return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Invalid MAIL FROM address provided"}
					}
					return nil
				},
				RcptReply: func(rcpt string) *smtp.SMTPError {
					if rcpt == "nobody@example.org" {
						return smtptest.Reply550()
					}
					return nil
				},
			})
			dir := t.TempDir()
			cfg := writeConfig(t, dir, sh, "", "")
			b, _ := os.ReadFile(cfg)
			text := string(b)
			if nullSender != "" {
				text = strings.Replace(text, "[upstream]\n", "[upstream]\nnull_sender = \""+nullSender+"\"\n", 1)
			}
			text += "\n[rewrite]\nadmin = \"admin@example.com\"\n"
			os.WriteFile(cfg, []byte(text), 0o644)
			r := start(t, dir, cfg)
			msg := "From: app@example.com\r\nTo: nobody@example.org\r\nSubject: to nobody\r\n\r\nbody\r\n"
			if err := r.send(t, "app@example.com", []string{"nobody@example.org"}, msg); err != nil {
				t.Fatal(err)
			}
			m := sh.WaitMessages(t, 1, 30*time.Second)[0]
			wantFrom, wantTo := nullSender, "app@example.com"
			if nullSender == "" {
				wantFrom, wantTo = "admin@example.com", "admin@example.com"
				r.waitLog(t, `the smarthost refuses the null sender <>: a notice could not be delivered`, 10*time.Second)
			}
			if m.From != wantFrom || len(m.To) != 1 || m.To[0] != wantTo {
				t.Errorf("notice went MAIL FROM:<%s> to %v, want <%s> to %s", m.From, m.To, wantFrom, wantTo)
			}
			// The notice names the failed recipient; the admin's copy is
			// about the failed notice, with the smarthost's refusal.
			want := "nobody@example.org"
			if nullSender == "" {
				want = "Invalid MAIL FROM address provided"
			}
			if !strings.Contains(string(m.Data), want) {
				t.Errorf("the notice does not say %q:\n%s", want, m.Data)
			}
			time.Sleep(2 * time.Second) // nothing more follows: no loop
			if n := len(sh.Messages()); n != 1 {
				t.Errorf("%d messages at the smarthost, want 1", n)
			}
		})
	}
}
