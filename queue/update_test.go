package queue

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"context"
	"github.com/emersion/go-smtp"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A meta update that fails to flush keeps the previous meta: the message is
// never lost because a state change could not be written.
func TestFailedUpdateKeepsMeta(t *testing.T) {
	h := newHarness(t, nil)
	h.q.setFlusher(FlushSyncfs)
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

// syncfs reports a writeback error once, to whichever batch asks. A
// message written before a failed flush must not be acknowledged by a
// later, successful one: its own pages may have been the ones lost.
func TestFlushFailureFailsEarlierWrittenMessages(t *testing.T) {
	h := newHarness(t, nil)
	h.q.setFlusher(FlushSyncfs)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	early, err := h.q.Create()
	if err != nil {
		t.Fatal(err)
	}
	early.Write([]byte("Subject: early\r\n\r\nwritten before the failure\r\n"))

	h.q.syncfs = func(int) error { return syscall.EIO }
	other, _ := h.q.Create()
	other.Write([]byte("Subject: x\r\n\r\nx\r\n"))
	if err := other.Commit(context.Background(), env, nil, FromSMTP); err == nil {
		t.Fatal("commit succeeded although syncfs failed")
	}
	h.q.syncfs = unix.Syncfs

	if err := early.Commit(context.Background(), env, nil, FromSMTP); err == nil {
		t.Fatal("a message written before a failed flush was acknowledged by a later flush")
	}
	late, _ := h.q.Create()
	late.Write([]byte("Subject: late\r\n\r\nwritten after\r\n"))
	if err := late.Commit(context.Background(), env, nil, FromSMTP); err != nil {
		t.Fatalf("a message written after the failure: %v", err)
	}
	if n := h.q.Len(); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// After a restart even the first attempt is persisted before Deliver: a
// message whose first attempt crashed relayd cannot make it loop.
func TestFirstAttemptAfterRestartIsPersisted(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, func(c *Config) { c.Dir = dir; c.Deliverer = nil })
	id := h.commit(Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, FromSMTP)
	h.q.Close()

	seen := make(chan int, 1)
	h2 := newHarness(t, func(c *Config) { c.Dir = dir })
	h2.del.set(func(d *Delivery) (Outcome, error) {
		m, err := loadMessage(h2.q.dir, d.ID)
		if err == nil {
			seen <- m.Attempts
		}
		return allOK(d)
	})
	h2.q.Flush(id)
	h2.run()
	select {
	case n := <-seen:
		if n != 1 {
			t.Errorf("attempts on disk inside the first Deliver after a restart: %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery after the restart")
	}
}

// When the outcome of an attempt cannot be written (disk full), the next
// attempt starts from the outcome kept in memory: a recipient already sent
// is not sent again.
func TestUnsavedOutcomeIsNotRedelivered(t *testing.T) {
	h := newHarness(t, nil)
	h.q.setFlusher(FlushSyncfs)
	var failing atomic.Bool
	h.q.syncfs = func(fd int) error {
		if failing.Load() {
			return syscall.ENOSPC
		}
		return unix.Syncfs(fd)
	}
	var mu sync.Mutex
	var offered [][]string
	h.del.set(func(d *Delivery) (Outcome, error) {
		mu.Lock()
		var addrs []string
		for _, r := range d.Rcpts {
			addrs = append(addrs, r.Addr)
		}
		offered = append(offered, addrs)
		first := len(offered) == 1
		mu.Unlock()
		if first {
			failing.Store(true) // the outcome write after this attempt fails
			return Outcome{Rcpts: []*smtp.SMTPError{nil, {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}}}, nil
		}
		return allOK(d)
	})
	h.commit(Envelope{From: "a@x.example", Rcpts: rcpts("sent@y.example", "later@y.example")}, FromSMTP)
	h.run()
	waitFor(t, "first attempt", func() bool { return h.del.count() == 1 })
	waitFor(t, "failed persist logged", func() bool {
		return strings.Contains(h.logs.String(), "cannot persist delivery state")
	})
	failing.Store(false)
	h.advance(10 * time.Minute)
	waitFor(t, "second attempt", func() bool { return h.del.count() == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(offered[1]) != 1 || offered[1][0] != "later@y.example" {
		t.Errorf("second attempt offered %v, want only later@y.example", offered[1])
	}
}

// A fault of the moment (here: no permission to read a message) stops Open
// instead of quarantining a good message.
func TestRecoveryStopsOnPassingFault(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	dir := t.TempDir()
	h := newHarness(t, func(c *Config) { c.Dir = dir; c.Deliverer = nil })
	id := h.commit(Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, FromSMTP)
	h.q.Close()
	body := filepath.Join(dir, "msg", id)
	os.Chmod(body, 0)
	defer os.Chmod(body, 0o600)
	if _, err := Open(Config{Dir: dir}); err == nil || !errors.Is(err, syscall.EACCES) {
		t.Fatalf("Open with an unreadable message: %v, want a refusal naming EACCES", err)
	}
	if _, err := os.Stat(body); err != nil {
		t.Fatalf("the message was moved: %v", err)
	}
}

func TestPassingFaultClassifier(t *testing.T) {
	if !passingFault(&os.PathError{Op: "open", Path: "x", Err: syscall.EMFILE}) || passingFault(errors.New("bad trailer")) {
		t.Fatal("passingFault misclassifies")
	}
}
