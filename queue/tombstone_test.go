package queue

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A stray meta/ID.gone beside a live message (empty, or a meta that does
// not say Removed, as a copy of its meta/ID.json would be) is not obeyed:
// the message is quarantined with the tombstone, its body intact; a
// tombstone without a message is quarantined alone.
func TestStrayTombstoneQuarantined(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	empty := h.commit(env, FromSMTP)
	copied := h.commit(env, FromSMTP)
	alone := newID(h.clock.Now())
	dir := h.q.dir
	h.q.Close()
	body, err := os.ReadFile(filepath.Join(dir, "msg", empty))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "meta", empty+".gone"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := loadMessage(dir, copied)
	if err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(dir, "meta", copied+".gone"), m)
	if err := os.WriteFile(filepath.Join(dir, "meta", alone+".gone"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	q, err := Open(Config{Dir: dir, Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Len() != 0 {
		t.Errorf("%d messages scheduled, want 0 (both quarantined)", q.Len())
	}
	for _, name := range []string{empty, empty + ".gone", copied, copied + ".gone", alone + ".gone"} {
		if _, err := os.Lstat(filepath.Join(dir, "corrupt", name)); err != nil {
			t.Errorf("%s not in corrupt/: %v", name, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "corrupt", empty)); err != nil || !bytes.Equal(got, body) {
		t.Errorf("quarantined body: %d bytes, %v; want %d", len(got), err, len(body))
	}
	if logs.Count("stray tombstone") < 2 {
		t.Errorf("no ERROR says why:\n%s", logs)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
