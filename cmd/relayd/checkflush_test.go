package main

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// relayd check reports the flush mode state_dir's filesystem gets.
func TestCheckReportsFlushMode(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	want := "OK queue.flush: "
	if st.Type == 0xef53 {
		want += "syncfs on ext4: queue.flush = auto"
	}
	cfg := checkSetup{dir: dir}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want %q:\n%s", code, want, out)
	}
	cfg = checkSetup{dir: dir, extra: "[queue]\nflush = \"fdatasync\"\n"}.write(t)
	out, _ = check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	if !strings.Contains(out, "OK queue.flush: fdatasync on ") {
		t.Fatalf("want the forced fdatasync reported:\n%s", out)
	}
}
