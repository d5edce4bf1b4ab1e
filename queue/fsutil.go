package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// noSpace maps ENOSPC and EDQUOT to an error that matches ErrNoSpace while
// keeping the original error in the chain. Other errors pass through.
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// freeBytes returns the bytes available to an unprivileged user on the
// filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("queue: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// openFile is os.OpenFile for the spool's message files, minus the poller:
// os.OpenFile offers every file to epoll and, as a regular file cannot be
// polled, switches it to non-blocking mode and back, four fcntl(2) and an
// epoll_ctl(2) per open (two opens per message). Interrupted opens are
// retried, as os.OpenFile does.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, perm)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are on stable storage.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("queue: fsync dir %s: %w", dir, err)
	}
	return nil
}

// atomicWrite replaces dst with data: write to a file in tmpDir (same
// filesystem), fsync it, rename it over dst, fsync dst's directory. A reader
// sees the old or the new content, never a mix; after a nil return the new
// content survives a crash.
func atomicWrite(tmpDir, dst string, data []byte) (err error) {
	f, err := os.CreateTemp(tmpDir, filepath.Base(dst)+".*.upd")
	if err != nil {
		return noSpace(fmt.Errorf("queue: atomic write %s: %w", dst, err))
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return noSpace(fmt.Errorf("queue: atomic write %s: %w", dst, err))
	}
	return syncDir(filepath.Dir(dst))
}

// rename is os.Rename for files, without the Lstat of newpath that
// os.Rename makes first (to refuse replacing a directory): one system call
// fewer on the per-message paths, where newpath is never a directory.
func rename(oldpath, newpath string) error {
	if err := unix.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}
