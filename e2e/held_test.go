package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// heldConfig writes the config with or without a smarthost, retries an hour
// apart (so a delivery within the test can only be the immediate attempt,
// never a retry) and a DKIM key.
func heldConfig(t *testing.T, dir string, sh *smtptest.Server, keys string) string {
	p := writeConfig(t, dir, sh, "", "")
	b, _ := os.ReadFile(p)
	s := strings.Replace(string(b), `min_backoff = "1s"`, `min_backoff = "1h"`, 1)
	s = strings.Replace(s, `max_backoff = "2s"`, `max_backoff = "2h"`, 1)
	if err := os.WriteFile(p, []byte(s+"\n"+keys), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Mail accepted while no smarthost is configured is held, signed at intake;
// configuring one (SIGHUP, or a restart) attempts it at once, not at a
// retry time, and it arrives DKIM-valid (issue 16).
func TestHeldMailDrainsWhenSmarthostConfigured(t *testing.T) {
	for _, how := range []string{"reload", "restart"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			keys, records := dkimSetup(t, dir, testKey{"example.com", "held", "ed25519"})
			cfg := heldConfig(t, dir, nil, keys)
			r := start(t, dir, cfg)
			if err := r.send(t, "app@example.com", []string{"bob@example.org"},
				"From: app@example.com\r\nTo: bob@example.org\r\nSubject: held marker-held\r\n\r\nbody\r\n"); err != nil {
				t.Fatal(err)
			}
			r.waitLog(t, `status=held`, 10*time.Second)
			sh := smarthost(t, smtptest.Faults{})
			heldConfig(t, dir, sh, keys)
			if how == "reload" {
				r.cmd.Process.Signal(syscall.SIGHUP)
				r.waitLog(t, `configuration reloaded`, 20*time.Second)
			} else {
				r.stop()
				r.start()
			}
			m := sh.WaitMessages(t, 1, 20*time.Second)[0]
			if !strings.Contains(string(m.Data), "marker-held") {
				t.Fatalf("unexpected message:\n%s", m.Data)
			}
			if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
				t.Errorf("held message not DKIM-valid:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "spool")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A message held before its domain had a DKIM key leaves unsigned unless
// the admin signs it: the start-up log says how many are waiting, `relayd
// queue resign --all` signs them with the current keys (the stored prefix
// is rewritten, the body is not), and it arrives DKIM-valid (issue 16).
func TestQueueResign(t *testing.T) {
	dir := t.TempDir()
	cfg := heldConfig(t, dir, nil, "")
	r := start(t, dir, cfg)
	if err := r.send(t, "app@example.com", []string{"bob@example.org"},
		"From: App <app@example.com>\r\nTo: bob@example.org\r\nSubject: resign marker-resign\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `status=held`, 10*time.Second)
	r.stop()
	keys, records := dkimSetup(t, dir, testKey{"example.com", "late", "ed25519"})
	heldConfig(t, dir, nil, keys)
	r.start()
	r.waitLog(t, `unsigned although a DKIM key now covers their From domain.*domain=example.com unsigned=1`, 10*time.Second)
	if out, errb, code := cli(t, "queue", "resign", "--all", "--config", cfg); code != 0 {
		t.Fatalf("queue resign: exit %d\n%s%s", code, out, errb)
	}
	r.waitLog(t, `queue resign: signed with the current keys`, 10*time.Second)
	sh := smarthost(t, smtptest.Faults{})
	heldConfig(t, dir, sh, keys)
	r.cmd.Process.Signal(syscall.SIGHUP)
	m := sh.WaitMessages(t, 1, 20*time.Second)[0]
	if n := strings.Count(string(m.Data), "DKIM-Signature:"); n != 1 {
		t.Fatalf("%d signatures, want 1:\n%s", n, m.Data)
	}
	if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
		t.Errorf("resigned message not DKIM-valid:\n%s\n%s", out, m.Data)
	}
	// An unknown ID is an error.
	if _, _, code := cli(t, "queue", "resign", "NOSUCHID0000000000", "--config", cfg); code == 0 {
		t.Error("resign of an unknown ID succeeded")
	}
}
