package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of size bytes on a new temporary directory
// (root only; skipped otherwise) and unmounts it when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// A spool filled to 100% with deferred mail drains completely when the
// smarthost comes back: an attempt whose state cannot be persisted still
// goes ahead (its success frees space), also after a restart on the full
// filesystem.
func TestFullSpoolDrains(t *testing.T) {
	dir := filepath.Join(mountTmpfs(t, "4m"), "spool")
	del := &fakeDeliverer{fn: replyAll(451, smtp.EnhancedCode{4, 3, 0}, "try later")}
	logs := &logBuf{}
	cfg := Config{Dir: dir, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Deliverer: del, Logger: slogTo(logs)}
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 300) // 19 KiB
	env := Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}
	var ids []string
	for len(ids) < 1000 {
		d, err := q.Create()
		if err == nil {
			if _, err = d.Write(body); err == nil {
				err = d.Commit(ctx, env, []byte("Received: x\r\n"), FromSMTP)
			}
			if err != nil {
				d.Abort()
			}
		}
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID())
	}
	if len(ids) < 20 || len(ids) == 1000 {
		t.Fatalf("%d messages fit in the 4 MiB spool", len(ids))
	}
	// Every message deferred at least once (most have a meta/ID.json).
	waitFor(t, "first attempts", func() bool {
		for _, id := range ids {
			if del.countID(id) == 0 {
				return false
			}
		}
		return true
	})
	cancel()
	<-done
	q.Close()
	// Fill what is left to the last byte.
	fill, err := os.Create(filepath.Join(filepath.Dir(dir), "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := fill.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for n := 512; n > 0; n /= 2 { // the tail smaller than a chunk
		for {
			if _, err := fill.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	fill.Close()
	if err := os.WriteFile(filepath.Join(dir, "tmp", "probe"), []byte("x"), 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("the filesystem is not full: write gave %v", err)
	}
	// The smarthost is back; relayd restarts on the full spool.
	del.set(allOK)
	q, err = Open(cfg)
	if err != nil {
		t.Fatalf("open on a full spool: %v", err)
	}
	defer q.Close()
	if q.Len() != len(ids) {
		t.Fatalf("%d messages after the restart, want %d", q.Len(), len(ids))
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("%d of %d deferred messages still queued with the smarthost back", n, len(ids))
	}
	for _, id := range ids {
		if del.countID(id) < 2 {
			t.Errorf("%s: delivered without the retry", id)
		}
	}
	t.Logf("%d messages drained from a full %s", len(ids), "4 MiB tmpfs")
}
