package e2e

// Issue 18 end to end: mail from the machine's real programs names the OS
// host (`hostname`), which differs from relayd's configured hostname. The
// real binary runs as daemon and as "sendmail"; bsd-mailx and cron's exact
// command line drive it; dkimpy verifies what reaches the smarthost.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

// newLocalEnv is a daemon with rewrite.admin/sender and a DKIM key for
// rewrite.sender's domain; it returns the key records.
func newLocalEnv(t *testing.T) (*smEnv, map[string]string, string) {
	t.Helper()
	osHost, err := os.Hostname()
	if err != nil || osHost == "" || strings.EqualFold(osHost, hostname) {
		t.Skipf("needs an OS host name other than %s (got %q, %v)", hostname, osHost, err)
	}
	e := newSMEnv(t, "", false)
	keys, records := dkimSetup(t, e.dir, testKey{"example.com", "s18", "ed25519"})
	b, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, append(b, "\n"+keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.r = start(t, e.dir, e.config)
	return e, records, osHost
}

// From root@$(hostname), written by a real program, leaves as
// rewrite.sender with its display name, signed for rewrite.sender's domain;
// To root@$(hostname) goes to rewrite.admin and never to the smarthost.
func TestLocalOSHostName(t *testing.T) {
	e, records, osHost := newLocalEnv(t)
	mail := smNeedTool(t, "bsd-mailx")
	rc := filepath.Join(e.dir, "mailrc")
	if err := os.WriteFile(rc, []byte("set sendmail="+e.sendmail+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := e.run(t, "mdadm says hello marker-mailx18\n", []string{"MAILRC=" + rc}, mail,
		"-a", "From: root <root@"+osHost+">", "-s", "DegradedArray event", "ops@example.org", "root@"+osHost)
	if res.code != 0 {
		t.Fatalf("mail: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// mutt-style: sendmail -t with the OS name, mixed case and a literal.
	msg := "From: Root <ROOT@" + strings.ToUpper(osHost) + ".>\nTo: root@" + osHost + ", postmaster@[127.0.0.1]\n" +
		"Cc: ops@example.org\nSubject: from mutt\n\nmarker-mutt18\n"
	e.mustShim(t, msg, "-t", "-i")

	for _, c := range []struct{ marker, display string }{{"marker-mailx18", "root"}, {"marker-mutt18", "Root"}} {
		var copies []smtpMessage
		var rcpts []string
		deadline := time.Now().Add(20 * time.Second)
		for len(rcpts) < 2 && time.Now().Before(deadline) {
			copies, rcpts = copies[:0], rcpts[:0]
			for _, m := range e.sh.Messages() {
				if bytes.Contains(m.Data, []byte(c.marker)) {
					copies = append(copies, smtpMessage{m.From, m.To, m.Data})
					rcpts = append(rcpts, m.To...)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, m := range copies {
			if m.from != smSender {
				t.Errorf("%s: envelope sender %q, want %s", c.marker, m.from, smSender)
			}
		}
		if strings.Join(rcpts, " ") != smAdmin+" ops@example.org" && strings.Join(rcpts, " ") != "ops@example.org "+smAdmin {
			t.Errorf("%s: the smarthost got recipients %v, want %s and ops@example.org", c.marker, rcpts, smAdmin)
		}
		if len(copies) == 0 {
			continue
		}
		data := copies[0].data
		from := smHeader(data, "From")
		if len(from) != 1 || from[0] != `"`+c.display+`" <`+smSender+`>` {
			t.Errorf("%s: From = %q, want %q <%s>", c.marker, from, c.display, smSender)
		}
		if ok, out := verifyDKIMPy(t, data, records); !ok || !bytes.Contains(data, []byte("d=example.com;")) {
			t.Errorf("%s: not DKIM-valid for example.com (dkimpy):\n%s\n%s", c.marker, out, data)
		}
	}
	for _, m := range e.sh.Messages() {
		for _, r := range m.To {
			if d := r[strings.LastIndexByte(r, '@')+1:]; strings.EqualFold(d, osHost) || strings.HasPrefix(d, "[") {
				t.Errorf("a local address reached the smarthost: %s", r)
			}
		}
	}
}

type smtpMessage struct {
	from string
	to   []string
	data []byte
}

// cron writes "To: root": the envelope goes to rewrite.admin and the
// header leaves qualified with the configured hostname. Cron's -B8BITMIME
// does not put BODY=8BITMIME on an ASCII message; 8-bit output does.
func TestLocalCronQualified(t *testing.T) {
	e, records, _ := newLocalEnv(t)
	for _, c := range []struct{ marker, body, want string }{
		{"marker-cron18a", "ascii only", ""},
		{"marker-cron18b", "caf\xc3\xa9", "8BITMIME"},
	} {
		msg := "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts /etc/cron.daily\n" +
			"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n" +
			c.marker + " " + c.body + "\n"
		e.mustShim(t, msg, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
		m := smWait(t, e.sh, c.marker, 20*time.Second)
		if m.From != smSender || len(m.To) != 1 || m.To[0] != smAdmin {
			t.Errorf("envelope %q -> %v, want %s -> [%s]", m.From, m.To, smSender, smAdmin)
		}
		if to := smHeader(m.Data, "To"); len(to) != 1 || to[0] != "root@"+hostname {
			t.Errorf("To = %q, want root@%s", to, hostname)
		}
		smCheckFrom(t, m, "Cron Daemon")
		if got := string(m.MailOpts.Body); got != c.want {
			t.Errorf("%s: BODY=%q on MAIL, want %q", c.marker, got, c.want)
		}
		if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
			t.Errorf("not DKIM-valid (dkimpy):\n%s\n%s", out, m.Data)
		}
	}
}

// A failure for mail from a local sender (sent as the no-reply
// rewrite.sender) produces a notice to rewrite.admin.
func TestLocalSenderFailureNotice(t *testing.T) {
	e, _, osHost := newLocalEnv(t)
	e.sh.SetFaults(smtpFaultsRefusing("gone@example.org"))
	e.mustShim(t, "From: root@"+osHost+"\nTo: gone@example.org\nSubject: nightly report\n\nmarker-fail18\n", "-t", "-i")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range e.sh.Messages() {
			if m.From != "" || !bytes.Contains(m.Data, []byte("gone@example.org")) {
				continue
			}
			if len(m.To) != 1 || m.To[0] != smAdmin {
				t.Fatalf("notice went to %v, want [%s]", m.To, smAdmin)
			}
			if !bytes.Contains(m.Data, []byte("550")) {
				t.Errorf("notice does not carry the refusal:\n%s", m.Data)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no failure notice reached the smarthost:\n%s", e.r.logs())
}

func smtpFaultsRefusing(rcpt string) smtptestFaults {
	return smtptestFaults{RcptReply: func(r string) *smtp.SMTPError {
		if r == rcpt {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
}

type smtptestFaults = smtptest.Faults
