package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
