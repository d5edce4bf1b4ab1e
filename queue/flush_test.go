package queue

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"relayd/internal/lazyfs"
)

func TestChooseFlush(t *testing.T) {
	for _, tc := range []struct {
		fs    int64
		mode  string
		force bool
		want  string // "" = refused
		warn  bool
	}{
		{magicExt4, "auto", false, FlushSyncfs, false},
		{magicXFS, "", false, FlushSyncfs, false},
		{magicBtrfs, "auto", false, FlushSyncfs, false},
		{magicTmpfs, "auto", false, FlushSyncfs, true},
		{magicFUSE, "auto", false, FlushFdatasync, false},
		{magicNFS, "auto", false, FlushFdatasync, false},
		{magicOverlay, "auto", false, FlushFdatasync, false},
		{0x12345678, "auto", false, FlushFdatasync, false},
		{magicExt4, "fdatasync", false, FlushFdatasync, false},
		{magicExt4, "syncfs", false, FlushSyncfs, false},
		{magicFUSE, "syncfs", false, "", false},
		{0x12345678, "syncfs", false, "", false},
		{magicFUSE, "syncfs", true, FlushSyncfs, true},
		{magicExt4, "bogus", false, "", false},
	} {
		fi, err := chooseFlush(tc.fs, tc.mode, tc.force)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s, %q, force=%v: chose %s, want it refused", fsName(tc.fs), tc.mode, tc.force, fi.Mode)
			}
			if tc.mode == "syncfs" && !errors.Is(err, ErrFlushRefused) {
				t.Errorf("%s, syncfs: err = %v, want ErrFlushRefused", fsName(tc.fs), err)
			}
			continue
		}
		if err != nil || fi.Mode != tc.want || (fi.Warning != "") != tc.warn || fi.Reason == "" {
			t.Errorf("%s, %q, force=%v: %+v, %v; want %s (warning %v)", fsName(tc.fs), tc.mode, tc.force, fi, err, tc.want, tc.warn)
		}
	}
}

// mountPassthrough mounts go-fuse's loopback filesystem (a plain FUSE
// passthrough of a temporary directory) and returns the mount point.
func mountPassthrough(t *testing.T) string {
	t.Helper()
	if err := lazyfs.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE is required under CI=true: %v", err)
		}
		t.Skipf("no FUSE here: %v", err)
	}
	backing, mnt := t.TempDir(), t.TempDir()
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: os.Geteuid() == 0, FsName: "passthrough"}})
	if err != nil {
		t.Fatalf("mount FUSE passthrough: %v", err)
	}
	lazyfs.CloseOnExec()
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// On a FUSE filesystem the auto mode never trusts syncfs, and an explicit
// syncfs is refused unless forced.
func TestFlushAutoOnFUSE(t *testing.T) {
	mnt := mountPassthrough(t)
	dir := filepath.Join(mnt, "spool")
	logs := &logBuf{}
	q, err := Open(Config{Dir: dir, Logger: newTestLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	fi := q.FlushMode()
	if fi.Mode != FlushFdatasync || fi.FSType != magicFUSE {
		t.Errorf("auto on FUSE chose %+v, want fdatasync", fi)
	}
	if !strings.Contains(logs.String(), "flush mode") || !strings.Contains(logs.String(), "mode=fdatasync") {
		t.Errorf("the chosen mode is not logged:\n%s", logs)
	}
	if got := q.flusher().mode(); got != FlushFdatasync {
		t.Errorf("the committer flushes with %s, want fdatasync", got)
	}
	// Mail commits and reads back in that mode.
	d, err := q.Create()
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	if err := d.Commit(t.Context(), Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, nil, FromSMTP); err != nil {
		t.Fatal(err)
	}
	id := d.ID()
	q.Close()
	if _, err := loadMessage(dir, id); err != nil {
		t.Errorf("message committed in fdatasync mode: %v", err)
	}
	if _, err := Open(Config{Dir: dir, Flush: FlushSyncfs}); !errors.Is(err, ErrFlushRefused) {
		t.Errorf("syncfs on FUSE without force: %v, want refused", err)
	}
	q, err = Open(Config{Dir: dir, Flush: FlushSyncfs, FlushForce: true, Logger: newTestLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if fi := q.FlushMode(); fi.Mode != FlushSyncfs || fi.Warning == "" || q.flusher().mode() != FlushSyncfs {
		t.Errorf("forced syncfs: %+v", fi)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("forced syncfs on FUSE logs no warning:\n%s", logs)
	}
}

// On ext4 the auto mode uses syncfs: the test's temporary directory if it
// is on ext4, else (as root) an ext4 image on a loop device.
func TestFlushAutoOnExt4(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != magicExt4 {
		dir = mountExt4(t)
	}
	q, err := Open(Config{Dir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if fi := q.FlushMode(); fi.Mode != FlushSyncfs || fi.FS != "ext4" || q.flusher().mode() != FlushSyncfs {
		t.Errorf("auto on ext4 chose %+v", fi)
	}
	q.setFlusher(FlushFdatasync) // as if the spool had been elsewhere
	if fi, err := q.RecheckFlush(); err != nil || fi.Mode != FlushSyncfs || q.flusher().mode() != FlushSyncfs {
		t.Errorf("RecheckFlush: %+v, %v; the committer flushes with %s", fi, err, q.flusher().mode())
	}
}

// mountExt4 makes a small ext4 image, loop-mounts it and returns the mount
// point; it skips when that is not possible (not root, no mkfs.ext4).
func mountExt4(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the temporary directory is not on ext4, and making one needs root")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("the temporary directory is not on ext4, and mkfs.ext4 is missing")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	mnt := t.TempDir()
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("loop mount of an ext4 image: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for range 50 {
			if exec.Command("umount", mnt).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
	})
	return mnt
}

func newTestLogger(l *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
