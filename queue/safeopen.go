package queue

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// OpenSpoolFile opens a file of the spool for reading, safely against
// whatever may have been put there: O_NOFOLLOW (a symlink is an error,
// ELOOP, never followed) and O_NONBLOCK (opening a FIFO does not wait for
// a writer: a FIFO with an ID-like name in msg/ once hung start-up and
// relayd queue list), then fstat(2): anything but a regular file is an
// error, which recovery answers by quarantining. The descriptor is
// switched back to blocking mode before use. It returns the file and its
// size. Every reader of msg/ and meta/ goes through it (recovery, List,
// relayd queue list and show, delivery's retries).
func OpenSpoolFile(path string) (*os.File, int64, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, 0, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("queue: %s is not a regular file (%s)", path, fileType(st.Mode))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, 0, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), st.Size, nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return fmt.Sprintf("mode %#o", mode)
}

// readSpoolFile reads a whole small spool file (a meta/ID.json) through
// OpenSpoolFile, refusing one longer than maxMetaLen.
func readSpoolFile(path string) ([]byte, error) {
	f, size, err := OpenSpoolFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxMetaLen {
		return nil, fmt.Errorf("queue: %s has %d bytes, more than a meta may", path, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", path, err)
	}
	return b, nil
}

// statSpoolFile is Lstat that also requires a regular file.
func statSpoolFile(path string) (int64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("queue: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return fi.Size(), nil
}
