package pickup

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A lasting problem with one maildrop file is logged once, not on every
// scan; the memory goes with the file.
func TestPickupLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	p := &Pickup{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for i := 0; i < 5; i++ {
		p.logOnce("f1", "maildrop file unreadable", "file", "f1")
	}
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for one file over 5 scans, want 1:\n%s", n, buf.String())
	}
	p.forget([]string{"other"})
	p.logOnce("f1", "maildrop file unreadable", "file", "f1")
	if n := strings.Count(buf.String(), "level=ERROR"); n != 2 {
		t.Errorf("after the file went and came back: %d ERROR lines, want 2", n)
	}
}

// A staged temp file of a killed sendmail command is removed after a
// day; a fresh one (a submission in progress) is left alone.
func TestPickupRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	drop, corrupt := filepath.Join(dir, "maildrop"), filepath.Join(dir, "corrupt")
	os.Mkdir(drop, 0o755)
	os.Mkdir(corrupt, 0o700)
	old, fresh := filepath.Join(drop, ".tmp.old"), filepath.Join(drop, ".tmp.fresh")
	os.WriteFile(old, []byte("x"), 0o600)
	os.WriteFile(fresh, []byte("x"), 0o600)
	past := time.Now().Add(-25 * time.Hour)
	os.Chtimes(old, past, past)
	p := &Pickup{dir: drop, corrupt: corrupt, log: slog.New(slog.DiscardHandler)}
	p.scan(context.Background())
	if _, err := os.Stat(old); err == nil {
		t.Errorf("a day-old staged file was kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh staged file was removed: %v", err)
	}
}

// The time budget of a file grows with its size.
func TestPickupFileBudget(t *testing.T) {
	if fileBudget(0) != pickupBaseTimeout || fileBudget(100<<20) <= fileBudget(1<<20) {
		t.Errorf("budgets %v %v %v", fileBudget(0), fileBudget(1<<20), fileBudget(100<<20))
	}
}

// A daemon that cannot read a maildrop file (mode 0600, another owner: not
// written by the sendmail command) quarantines it instead of logging an
// error about it on every scan. The pickup runs as nobody, in a copy of
// this test binary.
func TestPickupUnreadableQuarantined(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test needs root to run the pickup as nobody")
		}
		t.Skip("needs root to run the pickup as an ordinary user (nobody)")
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o711)
	}
	exe := filepath.Join(dir, "relayd.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	drop, corrupt := filepath.Join(dir, "maildrop"), filepath.Join(dir, "corrupt")
	os.Mkdir(drop, 0o777)
	os.Mkdir(corrupt, 0o777)
	os.Chmod(drop, 0o777)
	os.Chmod(corrupt, 0o777)
	name := "0000000000000001unreadable"
	if err := os.WriteFile(filepath.Join(drop, name), []byte("RELAYD-MAILDROP 1\n{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestPickupHelperProcess$")
	cmd.Env = append(os.Environ(), "RELAYD_PICKUP_HELPER="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines over 3 scans, want 1:\n%s", n, out)
	}
	if _, err := os.Lstat(filepath.Join(corrupt, "maildrop-"+name)); err != nil {
		t.Errorf("the unreadable file was not quarantined: %v\n%s", err, out)
	}
}

// TestPickupHelperProcess is the pickup of TestPickupUnreadableQuarantined.
func TestPickupHelperProcess(t *testing.T) {
	dir := os.Getenv("RELAYD_PICKUP_HELPER")
	if dir == "" {
		t.Skip("helper process only")
	}
	p := &Pickup{dir: filepath.Join(dir, "maildrop"), corrupt: filepath.Join(dir, "corrupt"),
		log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	for i := 0; i < 3; i++ {
		p.scan(context.Background())
	}
}
