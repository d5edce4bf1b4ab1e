package control

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// The socket never exists with a mode wider than 0660, even under umask 0
// (no window between bind and chmod). An observer stats the path while the
// socket is created again and again.
func TestListenNoWideWindow(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, SocketName)
	var stop atomic.Bool
	var wide atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if fi, err := os.Lstat(path); err == nil && fi.Mode().Perm()&^0o660 != 0 {
				wide.Add(1)
			}
		}
	}()
	for i := 0; i < 300 && wide.Load() == 0; i++ {
		l, err := Listen(dir)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	stop.Store(true)
	<-done
	if n := wide.Load(); n > 0 {
		t.Errorf("the control socket was seen %d times with a mode wider than 0660", n)
	}
}
