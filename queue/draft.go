package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"relayd/maillog"
)

// Draft is a message being received: its body goes straight to msg/ID.
// A Draft is used by one goroutine.
type Draft struct {
	q    *Queue
	id   string
	f    *os.File
	w    *bufio.Writer
	size int64
	done bool // committed or aborted
}

// Create starts a new message. It refuses (ErrNoSpace) when the spool's
// filesystem has less than Config.MinFreeBytes available.
func (q *Queue) Create() (*Draft, error) {
	select {
	case <-q.closing:
		return nil, ErrClosed
	default:
	}
	if q.cfg.MinFreeBytes > 0 {
		free, err := freeBytes(q.dir)
		if err != nil {
			return nil, err
		}
		if free < q.cfg.MinFreeBytes {
			return nil, fmt.Errorf("%w: %d bytes free in %s, queue.min_free_bytes is %d",
				ErrNoSpace, free, q.dir, q.cfg.MinFreeBytes)
		}
	}
	for range 8 { // an ID collision needs the same microsecond and 30 random bits
		id := newID(q.now())
		f, err := os.OpenFile(q.bodyPath(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, noSpace(fmt.Errorf("queue: create body: %w", err))
		}
		return &Draft{q: q, id: id, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
	}
	return nil, errors.New("queue: could not allocate a unique message ID")
}

// ID is the queue ID, for "250 2.0.0 Ok: queued as ID".
func (d *Draft) ID() string { return d.id }

// Size is the number of body bytes written so far.
func (d *Draft) Size() int64 { return d.size }

// Write appends to the body (buffered).
func (d *Draft) Write(p []byte) (int, error) {
	if d.done {
		return 0, errors.New("queue: write to a finished draft")
	}
	n, err := d.w.Write(p)
	d.size += int64(n)
	if err != nil {
		return n, noSpace(fmt.Errorf("queue: write body %s: %w", d.id, err))
	}
	return n, nil
}

// Abort removes the body. It is idempotent and a no-op after a successful
// Commit.
func (d *Draft) Abort() {
	if d.done {
		return
	}
	d.done = true
	if d.f != nil {
		d.f.Close()
	}
	_ = os.Remove(d.q.bodyPath(d.id))
}

// commitReq is one Draft waiting for the committer.
type commitReq struct {
	id   string
	tmp  string // tmp/ID.json, written but not synced
	meta string // meta/ID.json, the rename target
	// update: meta already exists (a state change of a queued message);
	// a failed batch must leave the old meta in place.
	update bool
	err    error
	done   chan struct{}
}

// Commit makes the message durable and schedules it for immediate delivery.
// When it returns nil, body, meta and directory entries are on stable
// storage and the caller may answer 250. On error nothing is left in the
// spool (the caller answers 451, or 452 when errors.Is(err, ErrNoSpace)).
//
// ctx bounds only the wait for the committer to accept the draft: once the
// batch is being flushed, Commit waits for the outcome, since answering an
// error for a message that did become durable would duplicate it.
func (d *Draft) Commit(ctx context.Context, env Envelope, prefix []byte, origin Origin) (err error) {
	if d.done {
		return errors.New("queue: commit of a finished draft")
	}
	q := d.q
	defer func() {
		if err != nil {
			d.Abort()
		}
	}()
	if len(env.Rcpts) == 0 {
		return errors.New("queue: commit without recipients")
	}
	if err := d.w.Flush(); err != nil {
		return noSpace(fmt.Errorf("queue: write body %s: %w", d.id, err))
	}
	// Closing does not flush to disk: this session's fdatasync does (run in
	// parallel with other sessions), or the committer's syncfs.
	if !q.useSyncfs {
		if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
			d.f.Close()
			d.f = nil
			return noSpace(fmt.Errorf("queue: fdatasync body %s: %w", d.id, err))
		}
	}
	err = d.f.Close()
	d.f = nil
	if err != nil {
		return noSpace(fmt.Errorf("queue: close body %s: %w", d.id, err))
	}
	now := q.now()
	m := &Meta{
		Version: metaVersion, ID: d.id, Arrival: now, Origin: origin,
		Envelope: env, Prefix: prefix, Size: d.size + int64(len(prefix)),
		// The first attempt's retry time is persisted with the commit
		// (invariant 4): the attempt starts at once (in memory), and if it
		// fails or a crash interrupts it, the retry waits out the first
		// backoff. deliver skips its own write for this attempt, saving a
		// file and a flush per message.
		NextAttempt: now.Add(q.backoff(1)),
	}
	m.Rcpts = append([]Recipient(nil), env.Rcpts...)
	for i := range m.Rcpts {
		if m.Rcpts[i].State == "" {
			m.Rcpts[i].State = Pending
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("queue: encode meta %s: %w", d.id, err)
	}
	req := &commitReq{id: d.id, tmp: q.path("tmp", d.id+".json"), meta: q.metaPath(d.id), done: make(chan struct{})}
	if err := writeTmp(req.tmp, b, !q.useSyncfs); err != nil {
		_ = os.Remove(req.tmp)
		return noSpace(fmt.Errorf("queue: write meta %s: %w", d.id, err))
	}
	select {
	case q.commits <- req:
	case <-q.closing:
		_ = os.Remove(req.tmp)
		return ErrClosed
	case <-ctx.Done():
		_ = os.Remove(req.tmp)
		return fmt.Errorf("queue: commit %s: %w", d.id, ctx.Err())
	}
	<-req.done
	if req.err != nil {
		return req.err
	}
	d.done = true
	rcpts := make([]string, len(m.Rcpts))
	for i, r := range m.Rcpts {
		rcpts[i] = r.Addr
	}
	maillog.Log(q.log, maillog.Event{ID: d.id, From: env.From, To: strings.Join(rcpts, ","),
		Status: maillog.Queued, Size: m.Size})
	if q.getDeliverer() == nil {
		maillog.Log(q.log, maillog.Event{ID: d.id, Status: maillog.Held,
			Reply: "no smarthost configured (upstream.address)"})
	}
	q.s.add(d.id, now, false) // due now; the meta says when to retry
	q.s.kick()
	return nil
}

// maxBatch bounds one group commit so a flood cannot delay the first waiter
// indefinitely.
const maxBatch = 1024

// commitLoop is the single committer: it takes every commit waiting at the
// moment as one batch and flushes once for all of them.
func (q *Queue) commitLoop() {
	defer q.committer.Done()
	batch := make([]*commitReq, 0, 64)
	for {
		batch = batch[:0]
		select {
		case r := <-q.commits:
			batch = append(batch, r)
		case <-q.closing:
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-q.commits:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		q.flushBatch(batch)
		for _, r := range batch {
			close(r.done)
		}
	}
}

// flushBatch: syncfs once (every body and tmp meta, and the new msg/
// entries: syncfs writes back all of the filesystem's data and metadata),
// rename each meta into place (the commit markers, or state updates of
// queued messages), fsync meta/ once. In per-file mode the sessions
// fdatasync'ed their own files and msg/ is fsynced here instead of syncfs.
// A failure fails every request in the batch and leaves no new meta behind
// (an update keeps the previous meta).
func (q *Queue) flushBatch(batch []*commitReq) {
	q.batches.Add(1)
	fail := func(err error, reqs []*commitReq) {
		for _, r := range reqs {
			r.err = err
			_ = os.Remove(r.tmp)
			if !r.update {
				_ = os.Remove(r.meta)
			}
		}
	}
	if q.useSyncfs {
		if err := q.syncfs(int(q.rootFD.Fd())); err != nil {
			fail(noSpace(fmt.Errorf("queue: syncfs %s: %w", q.dir, err)), batch)
			return
		}
	}
	if !q.useSyncfs {
		// syncfs already wrote the new body entries of msg/; per-file
		// mode must sync the directory itself.
		if err := syncDir(q.path("msg")); err != nil {
			fail(noSpace(err), batch)
			return
		}
	}
	ok := batch[:0:0]
	for _, r := range batch {
		if err := os.Rename(r.tmp, r.meta); err != nil {
			fail(noSpace(fmt.Errorf("queue: commit %s: %w", r.id, err)), []*commitReq{r})
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return
	}
	if err := syncDir(q.path("meta")); err != nil {
		fail(noSpace(err), ok)
		_ = syncDir(q.path("meta")) // try to make the removals durable too
	}
}

// writeTmp writes a meta file in tmp/, with fdatasync in per-file mode.
func writeTmp(p string, b []byte, sync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = unix.Fdatasync(int(f.Fd()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
