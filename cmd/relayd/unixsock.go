package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// listenUnixMode creates a Unix socket at path that has mode from its first
// moment: it is bound under a temporary name, chmodded, then renamed into
// place, so a client never finds the socket with narrower permissions (a
// non-root sendmail would otherwise fail with EACCES in that window).
func listenUnixMode(path string, mode os.FileMode) (net.Listener, error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it is removed under its final name below
	if err := os.Chmod(tmp, mode); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("rename %s: %w", tmp, err)
	}
	return &unlinkOnClose{UnixListener: ul, path: path}, nil
}

// unlinkOnClose removes the socket file when the listener closes.
type unlinkOnClose struct {
	*net.UnixListener
	path string
}

func (l *unlinkOnClose) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}
