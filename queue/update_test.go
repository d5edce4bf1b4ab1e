package queue

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A meta update that fails to flush keeps the previous meta: the message is
// never lost because a state change could not be written.
func TestFailedUpdateKeepsMeta(t *testing.T) {
	h := newHarness(t, nil)
	h.q.useSyncfs = true
	id := h.commit(Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, FromSMTP)
	m, err := h.q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	h.q.syncfs = func(int) error { return syscall.EIO }
	m.Attempts = 7
	if err := h.q.writeMeta(m); err == nil {
		t.Fatal("update succeeded although the flush failed")
	}
	h.q.syncfs = unix.Syncfs
	got, err := h.q.Get(id)
	if err != nil {
		t.Fatalf("meta lost after a failed update: %v", err)
	}
	if got.Attempts != 0 {
		t.Errorf("failed update became visible: attempts = %d", got.Attempts)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.q.dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not cleaned after failed update: %v", ents)
	}
	m.Attempts = 3
	if err := h.q.writeMeta(m); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.q.Get(id); got.Attempts != 3 {
		t.Errorf("update lost: attempts = %d", got.Attempts)
	}
}
