package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
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
	for _, syncfs := range []bool{true, false} {
		t.Run(fmt.Sprintf("syncfs=%v", syncfs), func(t *testing.T) {
			h := newHarness(t, nil)
			h.q.useSyncfs = syncfs
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
			want := append(append([]byte(nil), prefix...), body...)
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
			defer q.Close()
			if q.Len() != 2 {
				t.Errorf("after reopen: %d messages, want 2", q.Len())
			}
			if got := readAllMessage(t, q, id); !bytes.Equal(got, want) {
				t.Errorf("after reopen: %q", got)
			}
			if got := dirNames(t, filepath.Join(dir, "corrupt")); len(got) != 0 {
				t.Errorf("corrupt/ = %v", got)
			}
		})
	}
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
			want := append(append([]byte(nil), prefix...), b...)
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
			defer q.Close()
			if got := readAllMessage(t, q, id); !bytes.Equal(got, want) {
				t.Errorf("after reopen: %q", got)
			}
			if got := dirNames(t, filepath.Join(dir, "corrupt")); len(got) != 0 {
				t.Errorf("corrupt/ = %v", got)
			}
		})
	}
}
