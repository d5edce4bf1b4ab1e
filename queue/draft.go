package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"relayd/maillog"
)

// Draft is a message being received: its body goes straight to tmp/ID (or
// over a spare file, spare/NAME), which Commit completes with the meta
// trailer and renames to msg/ID. A Draft is used by one goroutine.
type Draft struct {
	q      *Queue
	id     string
	path   string // tmp/ID, or spare/NAME when reused
	reused bool   // path is a spare file: Commit truncates it to what was written
	prev   int64  // when reused: the spare's size at Create (-1: unknown)
	f      *os.File
	w      *bufio.Writer
	size   int64
	done   bool   // committed or aborted
	crc    uint32 // CRC-32C of the body written so far (bodycrc.go)
	errs   uint64 // q.syncErrs at Create, see commitReq.errs
	fixed  string // what the intake changed, for the queued log line
}

// SetFixed records what the intake changed in the message (a
// comma-separated list such as "long-lines,8bitmime"): the status=queued
// log line carries it as fixed= (issue 16).
func (d *Draft) SetFixed(fixed string) { d.fixed = fixed }

// Create starts a new message. It refuses (ErrNoSpace) when the spool's
// filesystem has less than Config.MinFreeBytes available.
func (q *Queue) Create() (*Draft, error) {
	select {
	case <-q.closing:
		return nil, ErrClosed
	default:
	}
	if q.cfg.MinFreeBytes > 0 {
		free, err := q.free.bytes(q)
		if err != nil {
			return nil, err
		}
		if free < q.cfg.MinFreeBytes {
			return nil, fmt.Errorf("%w: %d bytes free in %s, queue.min_free_bytes is %d",
				ErrNoSpace, free, q.dir, q.cfg.MinFreeBytes)
		}
	}
	if sp, ok := q.spares.take(q.flushDurable.Load()); ok {
		p := q.path("spare", sp.name)
		f, prev := sp.f, sp.fsize
		var err error
		if f == nil {
			f, err = openFile(p, unix.O_RDWR, 0)
			// Commit truncates only a file that was longer than what
			// it writes: ftruncate(2) to the same length still costs
			// ext4 an inode update, and most messages of one sender
			// are alike.
			prev = -1
			if err == nil {
				if fi, err := f.Stat(); err == nil {
					prev = fi.Size()
				}
			}
		}
		if err == nil {
			// A collision of the new ID with a committed msg/ID is caught
			// by the commit's rename, which never replaces.
			return &Draft{q: q, id: newID(q.now()), path: p, reused: true, prev: prev, f: f,
				w: getWriter(f), errs: q.syncErrs.Load()}, nil
		}
		_ = os.Remove(p) // unusable: fall back to a new file
	}
	for range 8 { // an ID collision needs the same microsecond and 30 random bits
		// A collision with a committed msg/ID is caught by the commit's
		// rename, which never replaces (renameNoReplace).
		id := newID(q.now())
		p := q.path("tmp", id)
		f, err := openFile(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, noSpace(fmt.Errorf("queue: create message file: %w", err))
		}
		return &Draft{q: q, id: id, path: p, f: f, w: getWriter(f), errs: q.syncErrs.Load()}, nil
	}
	return nil, errors.New("queue: could not allocate a unique message ID")
}

// writerPool recycles the drafts' 64 KiB write buffers: one per message
// was most of relayd's garbage under a load of small messages.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// getWriter returns a pooled buffer writing f from its start (pwrite: a
// reused descriptor's offset is wherever its last message left it).
func getWriter(f *os.File) *bufio.Writer {
	w := writerPool.Get().(*bufio.Writer)
	w.Reset(io.NewOffsetWriter(f, 0))
	return w
}

// release returns the write buffer to the pool (idempotent). Nothing may
// be written after it.
func (d *Draft) release() {
	if d.w != nil {
		d.w.Reset(nil)
		writerPool.Put(d.w)
		d.w = nil
	}
}

// freeCache spares a statfs(2) per message: a result well above the
// threshold (freeSlack) is reused for freeTTL. Near the threshold, every
// Create asks the filesystem.
type freeCache struct {
	mu   sync.Mutex
	at   time.Time
	free int64
}

const (
	freeTTL   = 100 * time.Millisecond
	freeSlack = 256 << 20
)

func (c *freeCache) bytes(q *Queue) (int64, error) {
	now := q.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && now.Sub(c.at) < freeTTL && now.Sub(c.at) >= 0 && c.free >= q.cfg.MinFreeBytes+freeSlack {
		return c.free, nil
	}
	free, err := q.freeBytes(q.dir)
	if err != nil {
		c.at = time.Time{}
		return 0, err
	}
	c.at, c.free = now, free
	return free, nil
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
	d.crc = crc32.Update(d.crc, castagnoli, p[:n])
	if err != nil {
		return n, noSpace(fmt.Errorf("queue: write body %s: %w", d.id, err))
	}
	return n, nil
}

// Abort removes the draft's file. It is idempotent and a no-op after a successful
// Commit.
func (d *Draft) Abort() {
	if d.done {
		return
	}
	d.done = true
	d.release()
	if d.f != nil {
		d.f.Close()
	}
	_ = os.Remove(d.path)
}

// commitReq is one Draft waiting for the committer.
type commitReq struct {
	id  string
	tmp string // tmp/ID (a new message) or tmp/ID.json.*.upd (an update), written but not synced
	// f is tmp's open descriptor, for the committer's fdatasync; the
	// requester closes it after done.
	f *os.File
	// dst is the rename target: msg/ID for a new message (the commit
	// marker), meta/ID.json for an update.
	dst string
	// update: a state change of a queued message; a failed batch must
	// leave the old meta in place.
	update bool
	// errs is q.syncErrs when the file started to be written; a syncfs
	// failure since then may have been the loss of this file's own pages
	// (syncfs reports a writeback error once, to whichever batch asks), so
	// the request fails even if its own batch's syncfs succeeds.
	errs uint64
	err  error
	done chan struct{}
}

// Commit appends the meta and its trailer to the draft's file, makes it
// durable as msg/ID and schedules the message for immediate delivery.
// When it returns nil, body, meta and directory entry are on stable
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
		BodyCRC:     formatCRC(d.crc),
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
	// The meta goes into the same file, after the body: one inode per
	// message (creating files is what costs on ext4), see trailer.go.
	tr := appendTrailer(make([]byte, 0, len(b)+trailerLen), b)
	if _, err := d.w.Write(tr); err != nil {
		return noSpace(fmt.Errorf("queue: write meta %s: %w", d.id, err))
	}
	if err := d.w.Flush(); err != nil {
		return noSpace(fmt.Errorf("queue: write message %s: %w", d.id, err))
	}
	size := d.size + int64(len(tr))
	if d.reused && (d.prev < 0 || d.prev > size) {
		// Cut what is left of the file's previous message: the trailer
		// must be the last bytes (readTrailer reads the file's end).
		if err := d.f.Truncate(size); err != nil {
			return noSpace(fmt.Errorf("queue: truncate message %s: %w", d.id, err))
		}
	}
	// The file stays open (for the first attempt, see spares.keep); to
	// disk it goes by the committer's syncfs, or its fdatasync of every
	// file in the batch.
	d.release() // written: the buffer is not needed any more
	req := &commitReq{id: d.id, tmp: d.path, f: d.f, dst: q.bodyPath(d.id), errs: d.errs, done: make(chan struct{})}
	select {
	case q.commits <- req:
	case <-q.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("queue: commit %s: %w", d.id, ctx.Err())
	}
	<-req.done
	if req.err != nil {
		return req.err // Abort closes the file
	}
	d.done = true
	rcpts := make([]string, len(m.Rcpts))
	for i, r := range m.Rcpts {
		rcpts[i] = r.Addr
	}
	var extra []slog.Attr
	if d.fixed != "" {
		extra = []slog.Attr{slog.String("fixed", d.fixed)}
	}
	maillog.Log(q.log, maillog.Event{ID: d.id, From: env.From, To: strings.Join(rcpts, ","),
		Status: maillog.Queued, Size: m.Size, Extra: extra})
	lanes := q.lanesOf(m)
	held := q.getDeliverer() == nil && (lanes == nil || slices.Contains(lanes, DefaultLane))
	if held {
		maillog.Log(q.log, maillog.Event{ID: d.id, Status: maillog.Held,
			Reply: "no smarthost configured (upstream.address)"})
	}
	// Due now; the meta says when to retry. The first attempt starts from
	// m, which nothing else holds from here on.
	var keep *Meta
	q.s.mu.Lock()
	room := q.s.roomLocked(lanes)
	q.s.mu.Unlock()
	if !held && room {
		keep = m
		q.spares.keep(d.id, d.f, size) // for the first attempt's read
	} else {
		d.f.Close()
	}
	d.f = nil
	q.s.addFresh(d.id, now, keep, lanes)
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

// flushBatch: make the data of every file of the batch durable (the
// flusher: one syncfs, or an fdatasync of each file), rename each into place (new messages into
// msg/: the commit markers; state updates into meta/), then fsync msg/ and
// meta/ once each (whichever got entries). A failure fails every request
// it touches and leaves no new message behind (an update keeps the
// previous meta).
func (q *Queue) flushBatch(batch []*commitReq) {
	q.batches.Add(1)
	gen := q.flushStarted.Add(1)
	fail := func(err error, reqs []*commitReq) {
		for _, r := range reqs {
			r.err = err
			_ = os.Remove(r.tmp)
			if !r.update {
				_ = os.Remove(r.dst)
			}
		}
	}
	batch, all := q.flusher().flush(batch, fail)
	if all {
		q.flushDurable.Store(gen) // every rename out of msg/ before it is on disk
	}
	var msgs, metas []*commitReq
	for _, r := range batch {
		if r.update {
			if err := rename(r.tmp, r.dst); err != nil {
				fail(noSpace(fmt.Errorf("queue: update meta %s: %w", r.id, err)), []*commitReq{r})
				continue
			}
			metas = append(metas, r)
			continue
		}
		if err := renameNoReplace(r.tmp, r.dst); err != nil {
			// Not fail(): on a collision, dst is another message.
			r.err = noSpace(fmt.Errorf("queue: commit %s: %w", r.id, err))
			_ = os.Remove(r.tmp)
			continue
		}
		msgs = append(msgs, r)
	}
	for _, g := range []struct {
		dir  string
		reqs []*commitReq
	}{{"msg", msgs}, {"meta", metas}} {
		if len(g.reqs) == 0 {
			continue
		}
		if err := q.syncSub(g.dir); err != nil {
			fail(noSpace(err), g.reqs)
			_ = q.syncSub(g.dir) // try to make the removals durable too
		} else if g.dir == "msg" {
			q.flushDurable.Store(gen) // (again, after a syncfs: the same gen)
		}
	}
}

// renameNoReplace renames oldpath to newpath unless newpath exists
// (renameat2(2) RENAME_NOREPLACE, atomic). On a filesystem without it, it
// checks first: the spool has one owner (the lock), and IDs collide only in
// the same microsecond with the same 30 random bits.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return &os.LinkError{Op: "renameat2", Old: oldpath, New: newpath, Err: err}
		}
		return nil
	}
	if _, err := os.Lstat(newpath); err == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrExist}
	}
	return os.Rename(oldpath, newpath)
}
