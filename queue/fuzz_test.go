package queue

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzReadMeta feeds arbitrary bytes to the meta readers in three ways:
// as meta/ID.json beside a bare 5-byte body (the two-file layout, and every
// message whose state changed), as the meta inside a well-formed trailer of
// msg/ID, and raw as the tail of msg/ID after the body (the trailer decoder
// itself). Each time the spool is opened: recovery must never panic, and
// the message must end up either loaded (readable through Get, List and
// OpenMessage, which yields exactly Size bytes) or quarantined in corrupt/,
// never silently dropped. "@ID@" in the input is replaced by the message
// ID so seeds can be consistent. The seed corpus is in
// testdata/fuzz/FuzzReadMeta; bench/fuzz.sh runs it with -fuzz.
func FuzzReadMeta(f *testing.F) {
	f.Add([]byte(`{"version":1,"id":"@ID@","arrival":"2026-03-01T12:00:00Z","origin":"smtp","from":"a@example.com","rcpts":[{"addr":"b@example.org","state":"pending"}],"size":5}`))
	f.Add([]byte(`{"version":1,"id":"@ID@","prefix":"UmVjZWl2ZWQ6IHgNCg==","size":16,"rcpts":[]}`))
	f.Add([]byte(`{"version":1,"id":"@ID@","size":-1}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"id":"@ID@","si`))
	f.Add([]byte(``))
	f.Add(appendTrailer(nil, []byte(`{"version":1,"id":"0000000000000000000","size":5}`)))
	f.Add([]byte("{\"version\":1}\nRELAYD-META1 0000000d 00000000\n"))
	f.Add([]byte("\nRELAYD-META1 ffffffff 00000000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id := newID(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		data = bytes.ReplaceAll(data, []byte("@ID@"), []byte(id))
		body := []byte("body\n")
		fuzzOpen(t, id, "meta", body, data)
		fuzzOpen(t, id, "msg", appendTrailer(append([]byte(nil), body...), data), nil)
		fuzzOpen(t, id, "msg", append(append([]byte(nil), body...), data...), nil)
	})
}

// fuzzOpen writes msg/ID (and meta/ID.json unless meta is nil), opens the
// spool and checks the message was loaded or quarantined. key is the
// directory whose file decides which: "meta" or "msg".
func fuzzOpen(t *testing.T, id, key string, msg, meta []byte) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)}
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := os.WriteFile(filepath.Join(dir, "msg", id), msg, 0o600); err != nil {
		t.Fatal(err)
	}
	file, corrupt := filepath.Join(dir, "msg", id), filepath.Join(dir, "corrupt", id)
	if meta != nil {
		file, corrupt = filepath.Join(dir, "meta", id+".json"), filepath.Join(dir, "corrupt", id+".json")
		if err := os.WriteFile(file, meta, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q, err = Open(cfg)
	if err != nil {
		t.Fatalf("Open with a broken %s/: %v", key, err)
	}
	defer q.Close()
	_, statErr := os.Stat(file)
	_, corruptErr := os.Stat(corrupt)
	switch {
	case statErr == nil && corruptErr == nil:
		t.Fatal("message both loaded and quarantined")
	case statErr == nil:
		m, err := q.Get(id)
		if err != nil {
			t.Fatalf("loaded message unreadable: %v", err)
		}
		if m.ID != id || !q.s.has(id) {
			t.Fatalf("loaded meta for %q (scheduled: %v)", m.ID, q.s.has(id))
		}
		n := 0
		if err := q.List(func(*Meta) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("List: %d messages, %v", n, err)
		}
		rc, err := q.OpenMessage(id)
		if err != nil {
			t.Fatalf("OpenMessage: %v", err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if int64(len(b)) != m.Size {
			t.Fatalf("message is %d bytes, meta says %d", len(b), m.Size)
		}
	case errors.Is(corruptErr, fs.ErrNotExist):
		t.Fatalf("%s/ file vanished: neither loaded nor quarantined", key)
	}
}
