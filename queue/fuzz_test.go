package queue

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
//
// The spool is made directly (msg/ and meta/; Open makes the rest) rather
// than by a first Open, and on a tmpfs when there is one: Open's fsyncs and
// syncfs(2) on a disk shared with other work took up to seconds, which left
// the fuzzer at a few executions a minute. Neither is what this target
// tests (the recovery logic); durability has its own tests.
func fuzzOpen(t *testing.T, id, key string, msg, meta []byte) {
	dir := fuzzDir(t)
	cfg := Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)}
	for _, sub := range []string{"msg", "meta"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
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
	q, err := Open(cfg)
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

// tmpfsRoot is /dev/shm when it is a tmpfs, else "" (the default temp dir).
var tmpfsRoot = sync.OnceValue(func() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		if d, err := os.MkdirTemp("/dev/shm", "relayd-fuzz-"); err == nil {
			os.Remove(d)
			return "/dev/shm"
		}
	}
	return ""
})

// fuzzDir is a fresh spool directory, removed at the end of the test.
func fuzzDir(t *testing.T) string {
	root := tmpfsRoot()
	if root == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(root, "relayd-fuzz-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
