package queue

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A FIFO with an ID-like name in msg/ (or as a meta/ID.json), and a
// symlink in msg/, neither hang nor fool start-up, List or relayd queue
// list: they are quarantined, the good message is kept.
func TestRecoverySpecialFiles(t *testing.T) {
	h := newHarness(t, nil)
	good := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	dir := h.q.dir
	h.stopRun()
	h.q.Close()
	fifo := newID(time.Now())
	if err := unix.Mkfifo(filepath.Join(dir, "msg", fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	// A message whose meta/ID.json is a FIFO.
	metaFIFO := newID(time.Now().Add(time.Second))
	if err := os.WriteFile(filepath.Join(dir, "msg", metaFIFO), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "meta", metaFIFO+".json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink to a good message's file.
	link := newID(time.Now().Add(2 * time.Second))
	if err := os.Symlink(filepath.Join(dir, "msg", good), filepath.Join(dir, "msg", link)); err != nil {
		t.Fatal(err)
	}
	within(t, "relayd queue list (ReadOnlyList)", func() {
		var ids []string
		if err := ReadOnlyList(dir, func(m *Meta) error { ids = append(ids, m.ID); return nil }); err != nil {
			t.Error(err)
		}
		if len(ids) != 1 || ids[0] != good {
			t.Errorf("listed %v, want only %s", ids, good)
		}
	})
	within(t, "relayd queue show (OpenSpoolFile)", func() {
		if _, _, err := OpenSpoolFile(filepath.Join(dir, "msg", fifo)); err == nil {
			t.Error("OpenSpoolFile opened a FIFO")
		}
		if _, _, err := OpenSpoolFile(filepath.Join(dir, "msg", link)); err == nil {
			t.Error("OpenSpoolFile followed a symlink")
		}
	})
	var q *Queue
	within(t, "Open", func() {
		var err error
		q, err = Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
	})
	defer q.Close()
	if q.Len() != 1 {
		t.Errorf("%d messages scheduled, want 1", q.Len())
	}
	for _, name := range []string{fifo, metaFIFO, metaFIFO + ".json", link} {
		if _, err := os.Lstat(filepath.Join(dir, "corrupt", name)); err != nil {
			t.Errorf("%s not quarantined: %v", name, err)
		}
	}
	if _, err := loadMessage(dir, good); err != nil {
		t.Errorf("the good message: %v", err)
	}
}

// within runs fn and fails the test if it does not return in 10 s (a
// FIFO opened for reading without O_NONBLOCK waits for a writer forever).
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s hangs on a special file in the spool", what)
	}
}
