package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayd/conf"
	"relayd/queue"
)

// One default everywhere: the built-in state_dir is the packaged one.
func TestDefaultStateDirIsThePackages(t *testing.T) {
	c, err := conf.Load("../../packaging/relayd.toml")
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := conf.Parse(nil, "built-in defaults")
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != conf.DefaultStateDir || builtin.StateDir != conf.DefaultStateDir {
		t.Errorf("packaged state_dir %q, built-in %q, DefaultStateDir %q", c.StateDir, builtin.StateDir, conf.DefaultStateDir)
	}
}

func openTestQueue(t *testing.T, dir string) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Config{Dir: dir, MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func listAll(t *testing.T, dir string) []*queue.Meta {
	t.Helper()
	var ms []*queue.Meta
	if err := queue.ReadOnlyList(dir, func(m *queue.Meta) error { ms = append(ms, m); return nil }); err != nil {
		t.Fatal(err)
	}
	return ms
}

func readAll(t *testing.T, q *queue.Queue, id string) []byte {
	t.Helper()
	r, err := q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportOldSpool(t *testing.T) {
	old := spoolWithOne(t)
	before := listAll(t, old)
	oq := openTestQueue(t, old)
	want := readAll(t, oq, before[0].ID)
	oq.Close()

	newDir := t.TempDir()
	q := openTestQueue(t, newDir)
	defer q.Close()
	var logs bytes.Buffer
	imp := &spoolImport{from: old, q: q, log: slog.New(slog.NewTextHandler(&logs, nil))}
	n, err := imp.run(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("import: %d, %v", n, err)
	}
	if left := listAll(t, old); len(left) != 0 {
		t.Errorf("old spool still holds %d messages", len(left))
	}
	got := listAll(t, newDir)
	if len(got) != 1 {
		t.Fatalf("new spool holds %d messages, want 1", len(got))
	}
	if got[0].From != "app@example.com" || len(got[0].Rcpts) != 1 || got[0].Rcpts[0].Addr != "bob@example.org" ||
		got[0].Rcpts[0].State != queue.Pending {
		t.Errorf("imported envelope %+v", got[0].Envelope)
	}
	if b := readAll(t, q, got[0].ID); !bytes.Equal(b, want) {
		t.Errorf("imported message differs:\n%q\nwant\n%q", b, want)
	}
	if !strings.Contains(logs.String(), "imported a message from the old default state_dir") ||
		!strings.Contains(logs.String(), "old_id="+before[0].ID) {
		t.Errorf("import not logged:\n%s", logs.String())
	}
	// Again: nothing more.
	if n, err := imp.run(context.Background()); err != nil || n != 0 || len(listAll(t, newDir)) != 1 {
		t.Errorf("second import: %d, %v, %d messages", n, err, len(listAll(t, newDir)))
	}
}

// An import whose old copy could not be deleted (as after a crash between
// the commit and the delete) is finished at the next start, not repeated,
// even when the new copy is gone (delivered) meanwhile.
func TestImportOldSpoolInterruptedNoDuplicate(t *testing.T) {
	old := spoolWithOne(t)
	newDir := t.TempDir()
	q := openTestQueue(t, newDir)
	defer q.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	imp := &spoolImport{from: old, q: q, log: log,
		del: func(*queue.Queue, string) error { return errors.New("simulated crash") }}
	if _, err := imp.run(context.Background()); err == nil {
		t.Fatal("import with a failing delete did not fail")
	}
	if len(listAll(t, old)) != 1 || len(listAll(t, newDir)) != 1 {
		t.Fatalf("after the interrupted import: old %d, new %d", len(listAll(t, old)), len(listAll(t, newDir)))
	}
	// The new copy leaves the queue (delivered) before the next start.
	if err := q.Delete(listAll(t, newDir)[0].ID); err != nil {
		t.Fatal(err)
	}
	imp.del = nil
	n, err := imp.run(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("resumed import: %d, %v", n, err)
	}
	if len(listAll(t, old)) != 0 || len(listAll(t, newDir)) != 0 {
		t.Errorf("after the resumed import: old %d, new %d (want 0, 0: no duplicate)", len(listAll(t, old)), len(listAll(t, newDir)))
	}
}

// An import interrupted before its commit (journal line, no new message)
// is done again: no loss.
func TestImportOldSpoolBeforeCommitNoLoss(t *testing.T) {
	old := spoolWithOne(t)
	id := listAll(t, old)[0].ID
	if err := os.WriteFile(filepath.Join(old, importJournal), []byte(id+" 01K0ZB4127591Y1RJ1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newDir := t.TempDir()
	q := openTestQueue(t, newDir)
	defer q.Close()
	imp := &spoolImport{from: old, q: q, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if n, err := imp.run(context.Background()); err != nil || n != 1 {
		t.Fatalf("import: %d, %v", n, err)
	}
	if len(listAll(t, old)) != 0 || len(listAll(t, newDir)) != 1 {
		t.Errorf("old %d, new %d, want 0, 1", len(listAll(t, old)), len(listAll(t, newDir)))
	}
}

// The daemon imports only into the default state_dir.
func TestImportOldSpoolOnlyIntoDefault(t *testing.T) {
	q := openTestQueue(t, t.TempDir())
	defer q.Close()
	var logs bytes.Buffer
	importOldSpool(q, "/srv/elsewhere", slog.New(slog.NewTextHandler(&logs, nil)))
	if logs.Len() != 0 {
		t.Errorf("import into a state_dir of its own: %s", logs.String())
	}
}
