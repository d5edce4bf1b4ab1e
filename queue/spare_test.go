package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A removed message's file goes to spare/ and, once a flush that started
// after that removal has completed, the next message is written over it
// (same inode): the new message reads back exactly, with nothing of the
// longer old one after its trailer, also after a reopen. Before that flush
// it is not reused: the rename out of msg/ may not be on disk yet. Both
// flush modes.
func TestSpareFileReused(t *testing.T) {
	inBothFlushModes(t, nil, func(t *testing.T, h *harness) {
		env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
		prefix := []byte("Received: by test\r\n")
		old := commitBody(t, h.q, env, prefix, bytes.Repeat([]byte("old message line\r\n"), 500), FromSMTP)
		if err := h.q.Delete(old); err != nil {
			t.Fatal(err)
		}
		if got := dirNames(t, filepath.Join(h.q.dir, "spare")); len(got) != 1 || got[0] != old {
			t.Fatalf("spare/ = %v, want [%s]", got, old)
		}
		if _, err := os.Stat(h.q.bodyPath(old)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("msg/%s after Delete: %v", old, err)
		}
		oldInfo, err := os.Stat(filepath.Join(h.q.dir, "spare", old))
		if err != nil {
			t.Fatal(err)
		}
		// No flush since the removal: a new file, the spare waits.
		between := commitBody(t, h.q, env, prefix, []byte("Subject: between\r\n\r\nx\r\n"), FromSMTP)
		if st, err := os.Stat(h.q.bodyPath(between)); err != nil || os.SameFile(st, oldInfo) {
			t.Fatalf("a spare was reused before a flush made its removal durable (%v)", err)
		}

		body := []byte("Subject: short\r\n\r\nnew\r\n")
		id := commitBody(t, h.q, env, prefix, body, FromSMTP)
		if got := dirNames(t, filepath.Join(h.q.dir, "spare")); len(got) != 0 {
			t.Errorf("spare/ = %v after a Create, want it taken", got)
		}
		newInfo, err := os.Stat(h.q.bodyPath(id))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(oldInfo, newInfo) {
			t.Error("the new message did not reuse the spare file")
		}
		if newInfo.Size() >= oldInfo.Size() {
			t.Errorf("reused file is %d bytes, not cut below the old %d", newInfo.Size(), oldInfo.Size())
		}
		q := checkReadBack(t, h, id, append(append([]byte(nil), prefix...), body...))
		if q.Len() != 2 {
			t.Errorf("after reopen: %d messages, want 2", q.Len())
		}
	})
}

// checkReadBack checks that message id reads back as want, with a meta to
// match, closes h's queue, reopens the spool and checks again, with
// nothing quarantined. It returns the reopened queue (closed at cleanup).
func checkReadBack(t *testing.T, h *harness, id string, want []byte) *Queue {
	t.Helper()
	if got := readAllMessage(t, h.q, id); !bytes.Equal(got, want) {
		t.Errorf("OpenMessage = %q, want %q", got, want)
	}
	if m := h.meta(id); m.ID != id || m.Size != int64(len(want)) {
		t.Errorf("meta %+v", m)
	}
	dir := h.q.dir
	h.q.Close()
	q, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if got := readAllMessage(t, q, id); !bytes.Equal(got, want) {
		t.Errorf("after reopen: %q", got)
	}
	if got := dirNames(t, filepath.Join(dir, "corrupt")); len(got) != 0 {
		t.Errorf("corrupt/ = %v", got)
	}
	return q
}

// A message file someone is reading is unlinked, never recycled: the
// reader keeps reading its own message while new ones are written.
func TestSpareNotWhileRead(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	body := bytes.Repeat([]byte("being read\r\n"), 100)
	id := commitBody(t, h.q, env, nil, body, FromSMTP)
	rc, err := h.q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.q.Delete(id); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(h.q.dir, "spare")); len(got) != 0 {
		t.Fatalf("spare/ = %v: a file being read was recycled", got)
	}
	for range 3 {
		commitBody(t, h.q, env, nil, bytes.Repeat([]byte("other message\r\n"), 100), FromSMTP)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("reader got %d bytes (err %v), want its own %d", len(got), err, len(body))
	}
	if n := len(h.q.spares.readers); n != 0 {
		t.Errorf("%d readers still counted after Close", n)
	}
	if _, ok := h.q.spares.kept[id]; ok {
		t.Error("the deleted message's descriptor is still kept after its reader closed") // the last reader closes it
	}
	// Closed: the next removal recycles again.
	id2 := commitBody(t, h.q, env, nil, body, FromSMTP)
	if err := h.q.Delete(id2); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(h.q.dir, "spare")); len(got) != 1 {
		t.Errorf("spare/ = %v, want the removed message's file", got)
	}
}

// spare/ holds no mail: a spare file a crash left half overwritten is
// removed at Open, never read or quarantined as a message.
func TestSpareEmptiedAtOpen(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	id := commitBody(t, h.q, env, nil, []byte("Subject: x\r\n\r\nx\r\n"), FromSMTP)
	if err := h.q.Delete(id); err != nil {
		t.Fatal(err)
	}
	dir := h.q.dir
	h.q.Close()
	if err := os.WriteFile(filepath.Join(dir, "spare", id), []byte("half a new messa"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Len() != 0 {
		t.Errorf("%d messages, want 0", q.Len())
	}
	for _, sub := range []string{"spare", "msg", "corrupt"} {
		if got := dirNames(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ = %v, want empty", sub, got)
		}
	}
}

// The pool is bounded: a file over maxSpareFile, or beyond maxSpares
// files, is unlinked.
func TestSpareBounds(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	big := commitBody(t, h.q, env, nil, bytes.Repeat([]byte("x"), maxSpareFile+1), FromSMTP)
	if err := h.q.Delete(big); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(h.q.dir, "spare")); len(got) != 0 {
		t.Errorf("spare/ = %v: a file over maxSpareFile was kept", got)
	}
	var ids []string
	for range maxSpares + 3 {
		ids = append(ids, commitBody(t, h.q, env, nil, []byte("Subject: x\r\n\r\nx\r\n"), FromSMTP))
	}
	if err := h.q.Delete(ids...); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(h.q.dir, "spare")); len(got) != maxSpares {
		t.Errorf("spare/ has %d files, want the bound %d", len(got), maxSpares)
	}
	if got := dirNames(t, filepath.Join(h.q.dir, "msg")); len(got) != 0 {
		t.Errorf("msg/ = %v after deleting everything", got)
	}
}

// After a crash on a filesystem without a journal a file can be under its
// old name (tmp/ or spare/) and its committed one: Open leaves such a name
// alone instead of unlinking it, and says so. Close empties spare/.
func TestOpenKeepsLeftoverLinkedFromMsg(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	body := []byte("Subject: x\r\n\r\nkept\r\n")
	gone := commitBody(t, h.q, env, nil, body, FromSMTP)
	if err := h.q.Delete(gone); err != nil {
		t.Fatal(err)
	}
	id := commitBody(t, h.q, env, nil, body, FromSMTP)
	dir := h.q.dir
	h.q.Close()
	if got := dirNames(t, filepath.Join(dir, "spare")); len(got) != 0 {
		t.Fatalf("spare/ = %v after Close, want empty", got)
	}
	// The crash state, made with hard links (same inode under two names).
	for _, p := range []string{filepath.Join(dir, "tmp", id), filepath.Join(dir, "spare", "01JBYMTTY400AAAAAA")} {
		if err := os.Link(filepath.Join(dir, "msg", id), p); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logBuf{}
	q, err := Open(Config{Dir: dir, Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if got := readAllMessage(t, q, id); !bytes.Equal(got, body) {
		t.Fatalf("message after reopen: %q", got)
	}
	if n := logs.Count("also a committed message"); n != 2 {
		t.Errorf("%d warnings, want 2 (tmp/ and spare/):\n%s", n, logs)
	}
	if len(dirNames(t, filepath.Join(dir, "tmp"))) != 1 || len(dirNames(t, filepath.Join(dir, "spare"))) != 1 {
		t.Error("a leftover linked from msg/ was unlinked")
	}
}

// A spare no longer than the new message is written over without a cut
// (Commit skips the ftruncate): equal and longer messages read back
// exactly, also after a reopen.
func TestSpareReusedWithoutCut(t *testing.T) {
	body := func(n int) []byte {
		return append([]byte("Subject: s\r\n\r\n"), bytes.Repeat([]byte("line of the body\r\n"), n)...)
	}
	for _, c := range []struct {
		name     string
		old, new int
	}{{"equal", 50, 50}, {"longer", 50, 80}} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
			prefix := []byte("Received: by test\r\n")
			old := commitBody(t, h.q, env, prefix, body(c.old), FromSMTP)
			if err := h.q.Delete(old); err != nil {
				t.Fatal(err)
			}
			oldInfo, err := os.Stat(filepath.Join(h.q.dir, "spare", old))
			if err != nil {
				t.Fatal(err)
			}
			// A commit flushes: the removal is durable, the spare reusable.
			commitBody(t, h.q, env, prefix, []byte("Subject: between\r\n\r\nx\r\n"), FromSMTP)
			b := body(c.new)
			id := commitBody(t, h.q, env, prefix, b, FromSMTP)
			newInfo, err := os.Stat(h.q.bodyPath(id))
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(oldInfo, newInfo) {
				t.Fatal("the spare was not reused")
			}
			checkReadBack(t, h, id, append(append([]byte(nil), prefix...), b...))
		})
	}
}

// readingDeliverer reads each message through Delivery.Open, records what
// it read, and answers with fn.
func readingDeliverer(t *testing.T, h *harness, fn func(*Delivery) (Outcome, error)) *[][]byte {
	var mu sync.Mutex
	var got [][]byte
	h.del.set(func(d *Delivery) (Outcome, error) {
		rc, err := d.Open()
		if err != nil {
			t.Errorf("Open: %v", err)
			return Outcome{}, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("read: %v", err)
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
		return fn(d)
	})
	return &got
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// Commit keeps the message's descriptor: the first attempt reads through
// it, retire moves it into the pool with the file, and the next Create
// writes through it. Every message reads back as itself, a deferred first
// attempt leaves no descriptor behind (the retry opens msg/ID), and
// nothing stays open after Close.
func TestKeptDescriptorTravelsWithTheFile(t *testing.T) {
	before := openFDs(t)
	h := newHarness(t, nil)
	got := readingDeliverer(t, h, allOK)
	h.run()
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	prefix := []byte("Received: by test\r\n")
	first := bytes.Repeat([]byte("first message line\r\n"), 40)
	commitBody(t, h.q, env, prefix, first, FromSMTP)
	h.idle()
	sp := &h.q.spares
	sp.mu.Lock()
	nKept, nFree := len(sp.kept), len(sp.free)
	var pooled *os.File
	if nFree == 1 {
		pooled = sp.free[0].f
	}
	sp.mu.Unlock()
	if nKept != 0 || nFree != 1 || pooled == nil {
		t.Fatalf("after delivery: %d kept, %d spares (descriptor %v), want 0, 1 with its descriptor", nKept, nFree, pooled)
	}
	if len(*got) != 1 || !bytes.Equal((*got)[0], append(append([]byte(nil), prefix...), first...)) {
		t.Fatalf("first delivery read %q", *got)
	}

	// A commit flushes: the spare becomes reusable; the next Create
	// writes through the pooled descriptor.
	h.stopRun()
	commitBody(t, h.q, env, prefix, []byte("Subject: flush\r\n\r\nx\r\n"), FromSMTP)
	d, err := h.q.Create()
	if err != nil {
		t.Fatal(err)
	}
	if d.f != pooled {
		t.Fatalf("Create did not reuse the pooled descriptor")
	}
	second := []byte("Subject: short\r\n\r\nsecond\r\n")
	if _, err := d.Write(second); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(context.Background(), env, prefix, FromSMTP); err != nil {
		t.Fatal(err)
	}
	h.run()
	waitFor(t, "two more deliveries", func() bool { return h.del.count() == 3 })
	h.idle()
	want := append(append([]byte(nil), prefix...), second...)
	found := false
	for _, b := range *got {
		found = found || bytes.Equal(b, want)
	}
	if !found {
		t.Fatalf("the message written through the reused descriptor read back as none of %q", *got)
	}

	// A first attempt that defers closes the descriptor; the retry opens
	// msg/ID and reads the same bytes.
	readingDeliverer(t, h, func(d *Delivery) (Outcome, error) { return Outcome{}, errors.New("smarthost down") })
	third := bytes.Repeat([]byte("deferred once\r\n"), 30)
	id := commitBody(t, h.q, env, prefix, third, FromSMTP)
	waitFor(t, "the first attempt", func() bool { return h.del.countID(id) == 1 })
	h.idle()
	sp.mu.Lock()
	_, still := sp.kept[id]
	sp.mu.Unlock()
	if still {
		t.Fatal("the descriptor outlived the first pass")
	}
	got = readingDeliverer(t, h, allOK)
	h.advance(time.Hour)
	waitFor(t, "the retry", func() bool { return h.del.countID(id) == 2 })
	h.idle()
	want = append(append([]byte(nil), prefix...), third...)
	if len(*got) != 1 || !bytes.Equal((*got)[0], want) {
		t.Fatalf("the retry read %q, want %q", *got, want)
	}

	h.stopRun()
	h.q.Close()
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after Close, %d before the queue", after, before)
	}
}

// taggedBody is a message body whose every line names id: a read of
// another message's bytes shows.
func taggedBody(id string, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "X-ID: %s\r\n\r\n", id)
	for b.Len() < n {
		fmt.Fprintf(&b, "%s line %d\r\n", id, b.Len())
	}
	return b.Bytes()
}

func checkTagged(id string, b []byte) error {
	if !bytes.HasPrefix(b, []byte("Received: by test\r\nX-ID: "+id+"\r\n")) {
		return fmt.Errorf("%s: read %q", id, b[:min(len(b), 60)])
	}
	if n, own := bytes.Count(b, []byte(" line ")), bytes.Count(b, []byte(id+" line ")); n != own {
		return fmt.Errorf("%s: %d of %d lines are another message's", id, n-own, n)
	}
	return nil
}

// Under concurrent commits, deliveries that fail or defer at random,
// deletes, holds, flushes and slow readers, in both flush modes, every
// read (delivery or OpenMessage) returns the message's own bytes, and no
// descriptor outlives Close.
func TestKeptDescriptorsUnderLoad(t *testing.T) {
	before := openFDs(t)
	inBothFlushModes(t, func(c *Config) { c.Concurrency = 8 }, func(t *testing.T, h *harness) {
		read := func(id string, rc io.ReadCloser) {
			b, err := io.ReadAll(rc)
			rc.Close()
			if err == nil {
				err = checkTagged(id, b)
			}
			if err != nil {
				t.Error(err)
			}
		}
		var n atomic.Int64
		h.del.set(func(d *Delivery) (Outcome, error) {
			rc, err := d.Open()
			if err != nil {
				t.Errorf("%s: open: %v", d.ID, err)
				return Outcome{}, err
			}
			read(d.ID, rc)
			switch n.Add(1) % 4 {
			case 0:
				return Outcome{}, errors.New("smarthost down")
			case 1:
				return replyAll(451, smtp.EnhancedCode{4, 3, 0}, "later")(d)
			}
			return allOK(d)
		})
		h.run()
		env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
		ids := make(chan string, 1000)
		var commits, admin sync.WaitGroup
		for w := range 4 {
			commits.Add(1)
			go func() {
				defer commits.Done()
				for i := range 120 {
					d, err := h.q.Create()
					if err != nil {
						t.Error(err)
						return
					}
					d.Write(taggedBody(d.ID(), 50+(w*977+i*131)%4000))
					if err := d.Commit(context.Background(), env, []byte("Received: by test\r\n"), FromSMTP); err != nil {
						t.Error(err)
						return
					}
					ids <- d.ID()
				}
			}()
		}
		for range 2 {
			admin.Add(1)
			go func() {
				defer admin.Done()
				i := 0
				for id := range ids {
					switch i++; i % 5 {
					case 0:
						h.q.Delete(id)
					case 1:
						h.q.Hold(id)
						h.q.Release(id)
					case 2:
						h.q.Flush(id)
					default:
						if rc, err := h.q.OpenMessage(id); err == nil {
							time.Sleep(100 * time.Microsecond)
							read(id, rc)
						}
					}
				}
			}()
		}
		stop := make(chan struct{})
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-ticker.C:
					h.advance(11 * time.Minute)
				}
			}
		}()
		commits.Wait()
		close(ids)
		admin.Wait()
		close(stop)
		h.del.set(allOK)
		h.advance(2 * time.Hour)
		h.q.Flush()
		waitFor(t, "the queue to drain", func() bool { return h.q.Len() == 0 })
		h.idle()
		h.stopRun()
		h.q.Close()
		if after := openFDs(t); after != before {
			t.Errorf("%d descriptors open after Close, %d before the queue", after, before)
		}
	})
}

// A commit that completes while the queue closes does not keep its
// descriptor past Close.
func TestCloseWhileCommitting(t *testing.T) {
	for round := range 10 {
		before := openFDs(t)
		h := newHarness(t, nil)
		env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 40 {
					d, err := h.q.Create()
					if err != nil {
						return
					}
					d.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
					if err := d.Commit(context.Background(), env, nil, FromSMTP); err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(round*300) * time.Microsecond)
		h.q.Close()
		wg.Wait()
		if after := openFDs(t); after != before {
			t.Fatalf("round %d: %d descriptors open after Close, %d before", round, after, before)
		}
	}
}

// Messages of many sizes over reused spares (longer, shorter, equal; with
// their descriptor and without), in both flush modes: messages committed
// over them read back exactly after a reopen, from their trailer, and
// nothing is quarantined.
func TestSpareReuseRandomSizes(t *testing.T) {
	sizes := []int{60, 61, 59, 200, 3000, 5000, 1, 6000}
	inBothFlushModes(t, nil, func(t *testing.T, h *harness) {
		env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
		prefix := []byte("Received: by test\r\n")
		// Fill the pool: delivered messages bring their descriptor,
		// deleted ones (never attempted) come without.
		h.run()
		for i := range 45 {
			commitBody(t, h.q, env, prefix, taggedBody("x", sizes[(i*5+i/4)%len(sizes)]), FromSMTP)
		}
		h.idle()
		h.stopRun()
		for i := range 15 {
			id := commitBody(t, h.q, env, prefix, taggedBody("y", sizes[(i*3+1)%len(sizes)]), FromSMTP)
			if err := h.q.Delete(id); err != nil {
				t.Fatal(err)
			}
		}
		// Commits over the spares, never attempted: their meta is
		// the trailer, which must be the file's last bytes.
		want := map[string][]byte{}
		overLonger := 0
		for i := range 60 {
			d, err := h.q.Create()
			if err != nil {
				t.Fatal(err)
			}
			b := taggedBody(d.ID(), sizes[(i*3+i/2)%len(sizes)]+i%13)
			d.Write(b)
			if d.reused && d.prev > int64(len(b))+200 {
				overLonger++
			}
			if err := d.Commit(context.Background(), env, prefix, FromSMTP); err != nil {
				t.Fatal(err)
			}
			want[d.ID()] = append(append([]byte(nil), prefix...), b...)
		}
		if overLonger == 0 {
			t.Fatal("no message was written over a longer spare: the test proves nothing")
		}
		dir := h.q.dir
		h.q.Close()
		q, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		for id, w := range want {
			if got := readAllMessage(t, q, id); !bytes.Equal(got, w) {
				t.Errorf("%s read back as %q", id, got[:min(len(got), 80)])
			}
		}
		if got := dirNames(t, filepath.Join(dir, "corrupt")); len(got) != 0 {
			t.Errorf("corrupt/ = %v", got)
		}
	})
}
