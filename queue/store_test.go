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
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCommitThenReopen(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@example.com", Ret: "HDRS", EnvID: "xyz", UTF8: true, Body: "8BITMIME",
		Rcpts: []Recipient{{Addr: "b@example.net", ORcpt: "rfc822;b@example.net", Notify: []string{"SUCCESS", "FAILURE"}},
			{Addr: "c@example.org"}}}
	prefix := []byte("DKIM-Signature: v=1; a=rsa-sha256\r\nReceived: from x\r\n")
	body := bytes.Repeat([]byte("line of body text \xc3\xa9\r\n"), 5000) // > 64 KiB: bufio flushes mid-way
	id := commitBody(t, h.q, env, prefix, body, FromSMTP)
	if !validID(id) {
		t.Fatalf("bad id %q", id)
	}
	if !bytes.Contains([]byte(h.logs.String()), []byte("status=queued")) {
		t.Errorf("no status=queued log line:\n%s", h.logs)
	}
	dir := h.q.dir
	h.q.Close()

	q2, err := Open(Config{Dir: dir, Clock: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if q2.Len() != 1 {
		t.Fatalf("Len after reopen = %d, want 1", q2.Len())
	}
	m, err := q2.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.From != env.From || m.Ret != "HDRS" || m.EnvID != "xyz" || !m.UTF8 || m.Body != "8BITMIME" ||
		len(m.Rcpts) != 2 || m.Rcpts[0].ORcpt != env.Rcpts[0].ORcpt ||
		!slices.Equal(m.Rcpts[0].Notify, env.Rcpts[0].Notify) || m.Rcpts[1].State != Pending {
		t.Errorf("envelope not recovered: %+v", m)
	}
	if !bytes.Equal(m.Prefix, prefix) || m.Origin != FromSMTP || m.Version != metaVersion {
		t.Errorf("prefix/origin/version not recovered: %+v", m)
	}
	if m.Size != int64(len(prefix)+len(body)) || !m.Arrival.Equal(h.clock.Now()) {
		t.Errorf("size %d arrival %v", m.Size, m.Arrival)
	}
	rc, err := q2.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, append(append([]byte(nil), prefix...), body...)) {
		t.Errorf("OpenMessage: %d bytes differ from prefix+body (%d)", len(got), len(prefix)+len(body))
	}
}

func TestLayoutPermissions(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	h := newHarness(t, nil)
	want := map[string]fs.FileMode{
		"": 0o711, "tmp": 0o700, "msg": 0o700, "meta": 0o700, "corrupt": 0o700,
		"maildrop": 0o733 | fs.ModeSticky, "public": 0o755,
	}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(h.q.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode() & (fs.ModePerm | fs.ModeSticky); got != mode {
			t.Errorf("%s/: mode %v, want %v", name, got, mode)
		}
	}
}

func TestGroupCommitBatches(t *testing.T) {
	inBothFlushModes(t, nil, testGroupCommit)
}

func testGroupCommit(t *testing.T, h *harness) {
	syncfs := h.q.flusher().mode() == FlushSyncfs
	var syncs sync.Mutex
	n := 0
	h.q.syncfs = func(fd int) error {
		syncs.Lock()
		n++
		syncs.Unlock()
		time.Sleep(2 * time.Millisecond) // a disk flush takes time; let waiters pile up
		return unix.Syncfs(fd)
	}
	// Per-file mode: the committer's flush is the fsync of msg/; slow it
	// down too, or on a fast disk every commit may find the committer idle.
	h.q.syncDirFD = func(f *os.File) error {
		time.Sleep(2 * time.Millisecond)
		return f.Sync()
	}
	const N = 200
	var wg sync.WaitGroup
	ids := make([]string, N)
	errs := make(chan error, N)
	for i := range N {
		wg.Go(func() {
			d, err := h.q.Create()
			if err != nil {
				errs <- err
				return
			}
			fmt.Fprintf(d, "Subject: %d\r\n\r\nbody %d\r\n", i, i)
			if err := d.Commit(context.Background(), Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, nil, FromSMTP); err != nil {
				errs <- err
				return
			}
			ids[i] = d.ID()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if h.q.Len() != N {
		t.Fatalf("Len = %d, want %d", h.q.Len(), N)
	}
	// One file per message: msg/ID carries the meta in its trailer.
	for _, id := range ids {
		if _, err := h.q.Get(id); err != nil {
			t.Fatalf("meta of %s: %v", id, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(h.q.dir, "msg")); len(ents) != N {
		t.Errorf("msg/ has %d entries, want %d", len(ents), N)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.q.dir, "meta")); len(ents) != 0 {
		t.Errorf("meta/ has %d entries after plain commits, want none", len(ents))
	}
	b := h.q.batches.Load()
	t.Logf("%d commits in %d group flushes (%d syncfs calls)", N, b, n)
	if syncfs && (b >= N/2 || int64(n) != b) || !syncfs && (b >= N || n != 0) {
		t.Errorf("batches did not form: %d flushes for %d commits", b, N)
	}
	if tmp, _ := os.ReadDir(filepath.Join(h.q.dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty after commits: %d entries", len(tmp))
	}
}

func TestCommitSyncFailureLeavesNothing(t *testing.T) {
	h := newHarness(t, nil)
	h.q.setFlusher(FlushSyncfs) // the injectable flush
	for _, tc := range []struct {
		err     error
		noSpace bool
	}{{syscall.EIO, false}, {syscall.ENOSPC, true}} {
		h.q.syncfs = func(int) error { return tc.err }
		d, err := h.q.Create()
		if err != nil {
			t.Fatal(err)
		}
		d.Write([]byte("Subject: x\r\n\r\nx\r\n"))
		err = d.Commit(context.Background(), Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}, nil, FromSMTP)
		if err == nil || !errors.Is(err, tc.err) || errors.Is(err, ErrNoSpace) != tc.noSpace {
			t.Errorf("Commit with syncfs %v: err = %v", tc.err, err)
		}
		for _, sub := range []string{"tmp", "msg", "meta"} {
			if ents, _ := os.ReadDir(filepath.Join(h.q.dir, sub)); len(ents) != 0 {
				t.Errorf("%s/ not empty after failed commit: %v", sub, ents)
			}
		}
		d.Abort() // idempotent after a failed commit
	}
	if h.q.Len() != 0 {
		t.Errorf("Len = %d after failed commits", h.q.Len())
	}
}

func TestAbortRemovesBody(t *testing.T) {
	h := newHarness(t, nil)
	d, err := h.q.Create()
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("x"))
	if d.Size() != 1 {
		t.Errorf("Size = %d", d.Size())
	}
	d.Abort()
	d.Abort()
	if _, err := os.Stat(h.q.bodyPath(d.ID())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("body still there after Abort: %v", err)
	}
	if err := d.Commit(context.Background(), Envelope{Rcpts: rcpts("a@b.example")}, nil, FromSMTP); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestRecoveryQuarantineAndCleanup(t *testing.T) {
	h := newHarness(t, nil)
	env := Envelope{From: "a@x.example", Rcpts: rcpts("b@y.example")}
	good := h.commit(env, FromSMTP)
	updated := h.commit(env, FromSMTP) // gets a meta/ID.json that overrides its trailer
	short := h.commit(env, FromSMTP)   // trailer cut off, no meta/ID.json
	lost := h.commit(env, FromSMTP)    // meta/ID.json, body lost
	badTrailer := h.commit(env, FromSMTP)
	removing := h.commit(env, FromSMTP) // a removal a crash interrupted
	for _, id := range []string{updated, lost, removing} {
		m := h.meta(id)
		m.Attempts = 3
		if err := h.q.writeMeta(m); err != nil {
			t.Fatal(err)
		}
	}
	dir := h.q.dir
	h.q.Close()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Truncate(filepath.Join(dir, "msg", short), 3))
	must(os.Remove(filepath.Join(dir, "msg", lost)))
	f, err := os.OpenFile(filepath.Join(dir, "msg", badTrailer), os.O_WRONLY, 0)
	must(err)
	st, _ := f.Stat()
	_, err = f.WriteAt([]byte("X"), st.Size()-int64(trailerLen)-2) // inside the meta: checksum mismatch
	must(err)
	f.Close()
	// An interrupted removal: the final meta, marked Removed, became the
	// tombstone (removeMessage).
	rm, err := loadMessage(dir, removing)
	must(err)
	rm.Removed = true
	rb, _ := json.Marshal(rm)
	must(os.WriteFile(filepath.Join(dir, "meta", removing+".json"), rb, 0o600))
	must(os.Rename(filepath.Join(dir, "meta", removing+".json"), filepath.Join(dir, "meta", removing+".gone")))
	garbage := newID(time.Now())
	must(os.WriteFile(filepath.Join(dir, "meta", garbage+".json"), []byte("{not json"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "meta", "README"), []byte("x"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "msg", "junk"), []byte("x"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "tmp", "ABC.json"), []byte("{}"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "tmp", newID(time.Now())), []byte("never acknowledged"), 0o600))
	noTrailer := newID(time.Now()) // a body without meta: quarantined, never deleted
	must(os.WriteFile(filepath.Join(dir, "msg", noTrailer), []byte("x"), 0o600))

	logs := &logBuf{}
	q, err := Open(Config{Dir: dir, Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Len() != 2 || !q.s.has(good) || !q.s.has(updated) {
		t.Errorf("Len = %d, want only the good and the updated message", q.Len())
	}
	if m, err := q.Get(updated); err != nil || m.Attempts != 3 {
		t.Errorf("meta/ID.json does not override the trailer: %v %+v", err, m)
	}
	quarantined := []string{short, lost + ".json", badTrailer, garbage + ".json", "README", "junk", noTrailer}
	for _, name := range quarantined {
		if _, err := os.Stat(filepath.Join(dir, "corrupt", name)); err != nil {
			t.Errorf("corrupt/%s: %v", name, err)
		}
	}
	if n := logs.Count("level=ERROR msg=\"queue: quarantining broken message\""); n != len(quarantined) {
		t.Errorf("%d quarantine error lines, want %d:\n%s", n, len(quarantined), logs)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ leftovers not removed: %v", ents)
	}
	for _, p := range []string{"msg/" + removing, "meta/" + removing + ".gone", "meta/" + removing + ".json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("interrupted removal not finished: %s: %v", p, err)
		}
	}
	q.Close()
	// A second recovery never deletes what was quarantined.
	q3, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	q3.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "corrupt")); len(ents) != len(quarantined) {
		t.Errorf("corrupt/ has %d entries, want %d", len(ents), len(quarantined))
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	h := newHarness(t, nil)
	_, err := Open(Config{Dir: h.q.dir})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if want := filepath.Join(h.q.dir, "lock"); !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not name %s", err, want)
	}
	h.q.Close()
	q, err := Open(Config{Dir: h.q.dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	q.Close()
}

func TestNoSpace(t *testing.T) {
	err := noSpace(&fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC})
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("ENOSPC maps to %v", err)
	}
	if err := noSpace(syscall.EIO); errors.Is(err, ErrNoSpace) {
		t.Errorf("EIO maps to ErrNoSpace")
	}
	h := newHarness(t, func(c *Config) { c.MinFreeBytes = 1 << 62 })
	if _, err := h.q.Create(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Create with MinFreeBytes huge: %v", err)
	}
}

func TestIDs(t *testing.T) {
	now := time.Now()
	a, b := newID(now), newID(now.Add(time.Microsecond))
	if !validID(a) || !validID(b) || a[:idTimeLen] >= b[:idTimeLen] {
		t.Errorf("ids %s %s not valid/sorted", a, b)
	}
	// 10,000 IDs of one microsecond share 30 random bits: about 0.05
	// collisions are expected (birthday bound; Create retries one, and the
	// commit's rename never replaces). More than 2 (odds about 2e-5) means
	// the random part is broken.
	seen := map[string]bool{}
	dups := 0
	for range 10000 {
		id := newID(now)
		if seen[id] {
			dups++
		}
		seen[id] = true
	}
	if dups > 2 {
		t.Fatalf("%d duplicate IDs among 10,000 of the same microsecond", dups)
	}
	for _, bad := range []string{"", "../../etc/passwd", a[:17], a + "0", "0123456789abcdefgh", "0123456789ABCDEFGI", "0123456789ABCDEF/H"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}

func TestListAndReadOnlyList(t *testing.T) {
	h := newHarness(t, nil)
	var want []string
	for i := range 5 {
		want = append(want, h.commit(Envelope{From: fmt.Sprintf("s%d@x.example", i), Rcpts: rcpts("r@y.example")}, FromLocal))
	}
	sort.Strings(want)
	collect := func(list func(func(*Meta) error) error) []string {
		var got []string
		if err := list(func(m *Meta) error { got = append(got, m.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		return got
	}
	if got := collect(h.q.List); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	// The daemon holds the lock; mailq still reads.
	if got := collect(func(fn func(*Meta) error) error { return ReadOnlyList(h.q.dir, fn) }); !slices.Equal(got, want) {
		t.Errorf("ReadOnlyList = %v, want %v", got, want)
	}
	stop := errors.New("stop")
	if err := h.q.List(func(*Meta) error { return stop }); err != stop {
		t.Errorf("List did not return fn's error: %v", err)
	}
	if _, err := h.q.Get("../x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(../x) = %v", err)
	}
	if _, err := h.q.OpenMessage(newID(time.Now())); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenMessage(unknown) = %v", err)
	}
}

// The free-space check asks the filesystem at most every freeTTL while the
// space is well above queue.min_free_bytes, and at every Create near it.
func TestFreeSpaceCheckCached(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MinFreeBytes = 1 << 20 })
	calls, free := 0, int64(10<<30)
	h.q.freeBytes = func(string) (int64, error) { calls++; return free, nil }
	create := func() error {
		d, err := h.q.Create()
		if err == nil {
			d.Abort()
		}
		return err
	}
	for range 3 {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("%d statfs for 3 messages within %v, want 1", calls, freeTTL)
	}
	h.clock.Advance(freeTTL)
	create()
	if calls != 2 {
		t.Errorf("%d statfs after %v, want 2", calls, freeTTL)
	}
	h.clock.Advance(freeTTL)
	free = 1<<20 + 1<<10 // just above the threshold: no caching
	create()
	create()
	if calls != 4 {
		t.Errorf("%d statfs, want 4 (every Create near the threshold)", calls)
	}
	free = 1 << 19
	if err := create(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("below the threshold: %v, want ErrNoSpace at once", err)
	}
}
