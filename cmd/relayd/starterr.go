package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
)

// stateDirError says, once and naming state_dir, why the spool cannot be
// opened. The queue's error repeats the path its *fs.PathError already
// holds ("queue: chmod X: chmod X: operation not permitted"); this keeps
// the operation, the path and the cause once each, plus the fix.
func stateDirError(dir string, err error) error {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return fmt.Errorf("state_dir %s: %w", dir, err)
	}
	fix := "create it as root: mkdir -p " + dir + " && chown relayd:relayd " + dir +
		", and run relayd serve as root or as the user owning it"
	if errors.Is(pe.Err, syscall.ENOTDIR) || errors.Is(pe.Err, syscall.EEXIST) {
		fix = "set state_dir to a directory (" + pe.Path + " is a file)"
	}
	return &startError{fmt.Sprintf("state_dir %s: cannot %s %s: %v", dir, pe.Op, pe.Path, pe.Err), fix, err}
}

// listenError adds the fix to a listener that cannot be opened, as
// `relayd check` gives it.
func listenError(err error) error {
	var oe *net.OpError
	port := ""
	if errors.As(err, &oe) && oe.Addr != nil {
		if _, p, e := net.SplitHostPort(oe.Addr.String()); e == nil {
			port = p
		}
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return &startError{err.Error(), "another program listens there (an MTA such as Postfix or Exim, or another relayd): find it with ss -ltnp 'sport = :" +
			port + "' and stop it, or choose another address", err}
	case errors.Is(err, syscall.EACCES):
		return &startError{err.Error(), "ports below 1024 need root or CAP_NET_BIND_SERVICE (the packaged systemd unit grants it)", err}
	}
	return err
}

// startError is why the daemon could not start, with what to do about it.
type startError struct {
	msg, fix string
	err      error
}

func (e *startError) Error() string { return e.msg + "; fix: " + e.fix }
func (e *startError) Unwrap() error { return e.err }
