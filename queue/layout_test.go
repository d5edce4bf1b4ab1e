package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func readAllMessage(t *testing.T, q *Queue, id string) []byte {
	t.Helper()
	rc, err := q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A committed message is one file, msg/ID: the body from its first byte
// (so tools may read it from the start), then the meta and its trailer,
// which OpenMessage never yields. A later meta/ID.json overrides the
// trailer. Both flush modes.
func TestOneFilePerMessage(t *testing.T) {
	inBothFlushModes(t, nil, func(t *testing.T, h *harness) {
		prefix := []byte("Received: by test\r\n")
		body := []byte("Subject: no blank line, no final newline") // the trailer follows at once
		id := commitBody(t, h.q, Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, prefix, body, FromSMTP)
		for sub, want := range map[string]int{"msg": 1, "meta": 0, "tmp": 0} {
			if ents, _ := os.ReadDir(filepath.Join(h.q.dir, sub)); len(ents) != want {
				t.Errorf("%s/ has %v, want %d entries", sub, ents, want)
			}
		}
		raw, err := os.ReadFile(h.q.bodyPath(id))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, body) || !bytes.HasSuffix(raw[:len(raw)-trailerLen+len(trailerMagic)], []byte(trailerMagic)) {
			t.Errorf("msg/ID is not body + meta + trailer: %q", raw)
		}
		var m Meta
		if err := json.Unmarshal(raw[len(body):len(raw)-trailerLen], &m); err != nil || m.ID != id {
			t.Errorf("meta between body and trailer: %v %+v", err, m)
		}
		want := append(append([]byte(nil), prefix...), body...)
		if got := readAllMessage(t, h.q, id); !bytes.Equal(got, want) {
			t.Errorf("OpenMessage = %q, want %q", got, want)
		}
		m.Attempts = 2
		if err := h.q.writeMeta(&m); err != nil {
			t.Fatal(err)
		}
		if got := h.meta(id); got.Attempts != 2 {
			t.Errorf("meta/ID.json does not override the trailer: attempts %d", got.Attempts)
		}
		if got := readAllMessage(t, h.q, id); !bytes.Equal(got, want) {
			t.Errorf("OpenMessage after an update = %q, want %q", got, want)
		}
	})
}

// Removing a message that never changed state unlinks its one file at once;
// one with a meta/ID.json goes through the tombstone meta/ID.gone, during
// which readers already see it removed, and ends with nothing left.
func TestRemoval(t *testing.T) {
	inBothFlushModes(t, nil, func(t *testing.T, h *harness) {
		env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
		plain, changed := h.commit(env, FromSMTP), h.commit(env, FromSMTP)
		if err := h.q.Hold(changed); err != nil { // writes meta/ID.json
			t.Fatal(err)
		}
		if _, err := os.Stat(h.q.metaPath(changed)); err != nil {
			t.Fatal(err)
		}
		if err := h.q.Delete(plain, changed); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(h.q.bodyPath(plain)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("plain message's file still there after Delete: %v", err)
		}
		for _, id := range []string{plain, changed} {
			if _, err := h.q.Get(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%s) after Delete: %v", id, err)
			}
		}
		if err := h.q.List(func(m *Meta) error { return fmt.Errorf("listed %s", m.ID) }); err != nil {
			t.Error(err)
		}
		waitFor(t, "removal complete", func() bool {
			a, _ := os.ReadDir(filepath.Join(h.q.dir, "msg"))
			b, _ := os.ReadDir(filepath.Join(h.q.dir, "meta"))
			return len(a)+len(b) == 0
		})
	})
}

// A reader that finds a tombstone treats the message as removed although
// msg/ID (with a trailer saying "pending") is still there.
func TestTombstoneHidesTrailer(t *testing.T) {
	h := newHarness(t, nil)
	id := h.commit(Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, FromSMTP)
	if err := os.WriteFile(h.q.gonePath(id), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get with a tombstone: %v", err)
	}
	n := 0
	if err := ReadOnlyList(h.q.dir, func(*Meta) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("ReadOnlyList with a tombstone: %d messages, %v", n, err)
	}
}

// The commit's rename never replaces an existing msg/ID (an ID collision
// must not overwrite a queued message).
func TestCommitNeverReplaces(t *testing.T) {
	h := newHarness(t, nil)
	d, err := h.q.Create()
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("Subject: new\r\n\r\nnew\r\n"))
	other := []byte("an already queued message")
	if err := os.WriteFile(h.q.bodyPath(d.ID()), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(context.Background(), Envelope{Rcpts: rcpts("b@y.example")}, nil, FromSMTP); err == nil {
		t.Fatal("Commit over an existing msg/ID succeeded")
	}
	if got, _ := os.ReadFile(h.q.bodyPath(d.ID())); !bytes.Equal(got, other) {
		t.Errorf("existing msg/ID changed: %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.q.dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty: %v", ents)
	}
	if err := renameNoReplace(filepath.Join(h.q.dir, "nope"), filepath.Join(h.q.dir, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("renameNoReplace of a missing file: %v", err)
	}
}

// Spools written by the two-file layout (msg/ID is the bare body, the meta
// is meta/ID.json) are still read.
func TestOldLayoutReadable(t *testing.T) {
	h := newHarness(t, nil)
	dir := h.q.dir
	h.q.Close()
	id := newID(h.clock.Now())
	prefix, body := []byte("Received: x\r\n"), []byte("Subject: old\r\n\r\nold\r\n")
	m := Meta{Version: 1, ID: id, Arrival: h.clock.Now(), Origin: FromSMTP,
		Envelope: Envelope{From: "a@x.example", Rcpts: []Recipient{{Addr: "b@y.example", State: Pending}}},
		Prefix:   prefix, Size: int64(len(prefix) + len(body))}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "msg", id), body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "meta", id+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Len() != 1 {
		t.Fatalf("Len = %d", q.Len())
	}
	if got := readAllMessage(t, q, id); !bytes.Equal(got, append(prefix, body...)) {
		t.Errorf("OpenMessage = %q", got)
	}
}

func TestTrailerRoundTrip(t *testing.T) {
	for _, meta := range [][]byte{nil, []byte(`{"version":1}`), bytes.Repeat([]byte("x"), 70000)} {
		raw := appendTrailer([]byte("body"), meta)
		p := filepath.Join(t.TempDir(), "m")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, body, err := readTrailer(f, int64(len(raw)))
		f.Close()
		if err != nil || body != 4 || !bytes.Equal(got, meta) {
			t.Errorf("readTrailer(%d-byte meta) = %d bytes, body %d, %v", len(meta), len(got), body, err)
		}
	}
	for _, bad := range []string{
		"", "\nRELAYD-META1 0000000g 00000000\n", "\nRELAYD-META1 +0000000 00000000\n",
		"\nRELAYD-META2 00000000 00000000\n", "\nRELAYD-META1 00000000_00000000\n",
		"\nRELAYD-META1 7fffffff 00000000\n",
	} {
		if _, _, err := parseTrailer([]byte(bad)); err == nil {
			t.Errorf("parseTrailer(%q) accepted", bad)
		}
	}
}
