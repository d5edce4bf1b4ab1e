package queue

import (
	"context"
	"errors"
	"github.com/emersion/go-smtp"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHoldReleaseFlushDelete(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}
	held := h.commit(env, FromSMTP)
	gone := h.commit(env, FromSMTP)
	if err := h.q.Hold(held, gone); err != nil {
		t.Fatal(err)
	}
	if !h.meta(held).Held {
		t.Fatal("Held not persisted")
	}
	if err := h.q.Delete(gone); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Get(gone); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	// The janitor deletes the body once the meta's removal is durable.
	waitFor(t, "body removed", func() bool {
		_, err := os.Stat(h.q.bodyPath(gone))
		return os.IsNotExist(err)
	})
	if !strings.Contains(h.logs.String(), "id="+gone+" status=deleted") {
		t.Error("no status=deleted line")
	}
	h.run()
	time.Sleep(100 * time.Millisecond)
	if h.del.count() != 0 {
		t.Fatal("held message was attempted")
	}
	// Release keeps the schedule (due now): delivered.
	h.del.set(replyAll(451, [3]int{4, 3, 0}, "later"))
	if err := h.q.Release(held); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "attempt after release", func() bool { return h.del.count() == 1 })
	h.idle()
	if h.meta(held).Held {
		t.Error("still held on disk")
	}
	// Flush: due now although the next attempt is 10 minutes away.
	if err := h.q.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "attempt after flush", func() bool { return h.del.count() == 2 })
	h.idle()
	if err := h.q.Flush(held); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "attempt after flush by id", func() bool { return h.del.count() == 3 })
	h.idle()
	if err := h.q.Delete(held); err != nil {
		t.Fatal(err)
	}
	if h.q.Len() != 0 || len(h.notif.list()) != 0 {
		t.Errorf("Len %d notices %v", h.q.Len(), h.notif.list())
	}
	unknown := newID(time.Now())
	for name, op := range map[string]func(...string) error{"hold": h.q.Hold, "release": h.q.Release, "flush": h.q.Flush, "delete": h.q.Delete} {
		if err := op(unknown); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(unknown) = %v", name, err)
		}
		if err := op("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(bad id) = %v", name, err)
		}
	}
	if err := h.q.Delete(); err == nil {
		t.Error("Delete() with no IDs succeeded")
	}
}

// Hold and delete while a delivery is in flight apply when it ends.
func TestAdminDuringDelivery(t *testing.T) {
	h := newHarness(t, nil)
	entered, proceed := make(chan string, 2), make(chan struct{})
	h.del.set(func(d *Delivery) (Outcome, error) {
		entered <- d.ID
		<-proceed
		return replyAll(451, [3]int{4, 3, 0}, "later")(d)
	})
	a := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	b := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("b@y.example")}, FromSMTP)
	h.run()
	<-entered
	<-entered
	if err := h.q.Hold(a); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Delete(b); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	waitFor(t, "b deleted", func() bool { return h.attempts(b) == -1 && h.q.Len() == 1 })
	waitFor(t, "a held on disk", func() bool { m, err := h.q.Get(a); return err == nil && m.Held })
	h.advance(time.Hour)
	time.Sleep(50 * time.Millisecond)
	if h.del.count() != 2 {
		t.Errorf("held message attempted again: %d deliveries", h.del.count())
	}
}

func TestNoDelivererHolds(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Deliverer = nil })
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	h.run()
	waitFor(t, "holding line", func() bool {
		return strings.Contains(h.logs.String(), "no smarthost configured (upstream.address): mail is accepted and held in the queue until one is configured\" held=1")
	})
	if !strings.Contains(h.logs.String(), "id="+id+" status=held") {
		t.Errorf("no status=held line:\n%s", h.logs)
	}
	time.Sleep(50 * time.Millisecond)
	if h.attempts(id) != 0 {
		t.Fatal("attempted without a deliverer")
	}
	h.q.SetDeliverer(h.del)
	waitFor(t, "delivered after SetDeliverer", func() bool { return h.q.Len() == 0 })
}

// Run returns after cancel; a hung delivery gets its ctx cancelled after
// StopGrace, and the attempt stays counted on disk.
func TestRunStopGrace(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.StopGrace = 50 * time.Millisecond })
	var cancelled atomic.Bool
	started := make(chan struct{})
	hung := deliverFunc(func(ctx context.Context, d *Delivery) (Outcome, error) {
		close(started)
		<-ctx.Done()
		cancelled.Store(true)
		return Outcome{}, ctx.Err()
	})
	h.q.SetDeliverer(hung)
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	h.run()
	<-started
	h.stopRun()
	if !cancelled.Load() {
		t.Error("in-flight delivery was not cancelled")
	}
	if m := h.meta(id); m.Attempts != 1 || m.Rcpts[0].State != Pending {
		t.Errorf("after shutdown: %+v", m)
	}
}

type deliverFunc func(ctx context.Context, d *Delivery) (Outcome, error)

func (f deliverFunc) Deliver(ctx context.Context, d *Delivery) (Outcome, error) { return f(ctx, d) }

// The scheduler's memory per message must stay small: 100,000 entries.
func TestScheduleMemory(t *testing.T) {
	h := newHarness(t, nil)
	const N = 100_000
	ids := make([]string, N)
	base := time.Now()
	for i := range ids {
		ids[i] = newID(base.Add(time.Duration(i) * time.Microsecond))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, id := range ids {
		h.q.s.add(id, base.Add(time.Duration(N-i)*time.Second), false, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / N
	t.Logf("%d scheduled entries: heap grew %.1f MB, %.0f bytes/entry (IDs preallocated: +%d bytes each)",
		N, float64(after.HeapAlloc-before.HeapAlloc)/1e6, per, idLen)
	if per > 300 {
		t.Errorf("%.0f bytes per scheduled message, want < 300", per)
	}
	if h.q.Len() != N || h.q.s.def.h[0].id != ids[N-1] {
		t.Errorf("heap order wrong")
	}
	runtime.KeepAlive(ids)
}

// BenchmarkCommitParallel measures group commit in syncfs mode: one
// syncfs(2) per batch (the choice on ext4, xfs, btrfs).
func BenchmarkCommitParallel(b *testing.B) { benchCommit(b, true) }

// BenchmarkCommitParallelPerFile measures fdatasync mode (the choice
// elsewhere): the committer fdatasyncs every file of the batch, then
// batches the renames and directory fsyncs.
func BenchmarkCommitParallelPerFile(b *testing.B) { benchCommit(b, false) }

func benchCommit(b *testing.B, syncfs bool) {
	q, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	q.setFlusher(syncfsMode(syncfs))
	body := []byte(strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 64)) // 4 KiB
	env := Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(16) // many SMTP sessions per CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d, err := q.Create()
			if err != nil {
				b.Error(err)
				return
			}
			d.Write(body)
			if err := d.Commit(context.Background(), env, []byte("Received: x\r\n"), FromSMTP); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(q.batches.Load()), "msgs/flush")
}

// relayd queue bounce: pending recipients fail at once with a 5.0.0 reply,
// the sender gets one failure notice, and the message leaves the queue.
func TestBounceReturnsToSender(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set(func(d *Delivery) (Outcome, error) {
		rs := make([]*smtp.SMTPError, len(d.Rcpts))
		for i := range rs {
			rs[i] = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return Outcome{Rcpts: rs}, nil
	})
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example", "b@y.example")}, FromSMTP)
	h.run()
	waitFor(t, "first attempt", func() bool { return h.del.count() == 1 })
	h.idle()
	if err := h.q.Hold(id); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Bounce(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message removed", func() bool { return h.q.Len() == 0 })
	failed := h.notif.kinds(NoticeFailed)
	if len(failed) != 1 || len(failed[0].Rcpts) != 2 || !strings.Contains(failed[0].Rcpts[0].LastReply, "550 5.0.0 returned to the sender") {
		t.Fatalf("notices: %+v", failed)
	}
	if h.del.count() != 1 {
		t.Errorf("a bounced message was attempted again")
	}
	if err := h.q.Bounce(); err == nil {
		t.Error("bounce without IDs accepted")
	}
}
