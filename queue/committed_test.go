package queue

import (
	"os"
	"path/filepath"
	"testing"
)

// The first attempt of a message this process committed starts from the
// meta in memory: with its trailer gone from disk (so a read would fail),
// it is still delivered at once.
func TestFirstAttemptFromCommittedMeta(t *testing.T) {
	h := newHarness(t, nil)
	body := []byte("Subject: x\r\n\r\nbody\r\n")
	id := commitBody(t, h.q, Envelope{From: "s@x.example", Rcpts: rcpts("r@y.example")}, nil, body, FromSMTP)
	if err := os.Truncate(h.q.bodyPath(id), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Get(id); err == nil {
		t.Fatal("Get read a meta from a file without trailer")
	}
	h.run()
	waitFor(t, "delivery", func() bool { return h.del.count() == 1 })
	h.idle()
	if h.q.Len() != 0 {
		t.Errorf("%d messages left, want 0", h.q.Len())
	}
	if n := h.q.s.nCommitted; n != 0 {
		t.Errorf("nCommitted = %d after the attempt", n)
	}
}

// An admin operation before the first attempt drops the meta in memory:
// from then on the disk is the truth. Held messages' metas are not kept,
// nor are more than maxCommitted, nor any without a deliverer.
func TestCommittedMetaBounds(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "s@x.example", Rcpts: rcpts("r@y.example")}
	var ids []string
	for range maxCommitted + 5 {
		ids = append(ids, h.commit(env, FromSMTP))
	}
	if n := h.q.s.nCommitted; n != maxCommitted {
		t.Errorf("nCommitted = %d, want the bound %d", n, maxCommitted)
	}
	if err := h.q.Hold(ids[0]); err != nil {
		t.Fatal(err)
	}
	if e := h.q.s.byID[ids[0]]; e.committed != nil {
		t.Error("Hold kept the committed meta")
	}
	if n := h.q.s.nCommitted; n != maxCommitted-1 {
		t.Errorf("nCommitted = %d after Hold, want %d", n, maxCommitted-1)
	}
	if err := h.q.Delete(ids[1:]...); err != nil {
		t.Fatal(err)
	}
	if n := h.q.s.nCommitted; n != 0 {
		t.Errorf("nCommitted = %d after deleting them, want 0", n)
	}

	held := newHarness(t, func(c *Config) { c.Deliverer = nil })
	held.commit(env, FromSMTP)
	if n := held.q.s.nCommitted; n != 0 {
		t.Errorf("without a deliverer: nCommitted = %d, want 0", n)
	}
}

// A message whose meta/ID.json was written before its first attempt (an
// admin hold and release) leaves nothing behind once delivered: only the
// meta as committed lets the removal skip the tombstone.
func TestCommittedMetaDroppedRemovesMetaFile(t *testing.T) {
	h := newHarness(t, nil)
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("r@y.example")}, FromSMTP)
	if err := h.q.Hold(id); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Release(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.q.metaPath(id)); err != nil {
		t.Fatalf("hold and release wrote no meta/ID.json: %v", err)
	}
	h.run()
	waitFor(t, "delivery", func() bool { return h.del.count() == 1 })
	h.idle()
	waitFor(t, "removal complete", func() bool {
		a, _ := os.ReadDir(filepath.Join(h.q.dir, "msg"))
		b, _ := os.ReadDir(filepath.Join(h.q.dir, "meta"))
		return len(a)+len(b) == 0
	})
}
