package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A lasting problem with one maildrop file is logged once, not on every
// scan; the memory goes with the file.
func TestPickupLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	p := &pickup{log: slog.New(slog.NewTextHandler(&buf, nil))}
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
	p := &pickup{dir: drop, corrupt: corrupt, log: slog.New(slog.DiscardHandler)}
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
