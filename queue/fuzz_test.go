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

// FuzzReadMeta writes arbitrary bytes as meta/ID.json beside a 5-byte body
// and opens the spool: recovery must never panic, and the file must end up
// either loaded (readable through Get, List and OpenMessage) or
// quarantined in corrupt/, never silently dropped. "@ID@" in the input is
// replaced by the message ID so seeds can be consistent. The seed corpus is
// in testdata/fuzz/FuzzReadMeta; bench/fuzz.sh runs it with -fuzz.
func FuzzReadMeta(f *testing.F) {
	f.Add([]byte(`{"version":1,"id":"@ID@","arrival":"2026-03-01T12:00:00Z","origin":"smtp","from":"a@example.com","rcpts":[{"addr":"b@example.org","state":"pending"}],"size":5}`))
	f.Add([]byte(`{"version":1,"id":"@ID@","prefix":"UmVjZWl2ZWQ6IHgNCg==","size":16,"rcpts":[]}`))
	f.Add([]byte(`{"version":1,"id":"@ID@","size":-1}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"id":"@ID@","si`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		cfg := Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)}
		q, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		q.Close()
		id := newID(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		data = bytes.ReplaceAll(data, []byte("@ID@"), []byte(id))
		meta := filepath.Join(dir, "meta", id+".json")
		if err := os.WriteFile(filepath.Join(dir, "msg", id), []byte("body\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(meta, data, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err = Open(cfg)
		if err != nil {
			t.Fatalf("Open with a broken meta: %v", err)
		}
		defer q.Close()
		_, statErr := os.Stat(meta)
		_, corruptErr := os.Stat(filepath.Join(dir, "corrupt", id+".json"))
		switch {
		case statErr == nil && corruptErr == nil:
			t.Fatal("meta both loaded and quarantined")
		case statErr == nil:
			m, err := q.Get(id)
			if err != nil {
				t.Fatalf("loaded meta unreadable: %v", err)
			}
			if m.ID != id {
				t.Fatalf("loaded meta for %q", m.ID)
			}
			if err := q.List(func(*Meta) error { return nil }); err != nil {
				t.Fatalf("List: %v", err)
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
			t.Fatal("meta vanished: neither loaded nor quarantined")
		}
	})
}
