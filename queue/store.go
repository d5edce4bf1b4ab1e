package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"relayd/envelope"
	"relayd/internal/defaults"
)

// Errors callers test with errors.Is.
var (
	ErrNoSpace  = envelope.ErrNoSpace // errors.Is-equal for callers that only import envelope
	ErrNotFound = errors.New("queue: no such message")
	ErrLocked   = errors.New("queue: spool is locked by another process")
	ErrClosed   = errors.New("queue: closed")
)

// Config configures a Queue. Zero durations and counts get the defaults
// documented on each field.
type Config struct {
	Dir          string
	MinBackoff   time.Duration // default 5m
	MaxBackoff   time.Duration // default 1h
	MaxAge       time.Duration // default 5 days
	DelayWarning time.Duration // 0 = no delay notices
	Concurrency  int           // parallel deliveries, default 4
	MinFreeBytes int64         // refuse new mail (ErrNoSpace) below this
	StopGrace    time.Duration // in-flight deliveries' ctx is cancelled this long after Run's ctx; default 30s
	Deliverer    Deliverer     // nil: hold all mail (no smarthost configured)
	Notifier     Notifier      // nil: no notices (log only)
	Clock        func() time.Time
	Logger       *slog.Logger
	Rand         func() float64 // jitter source in [0,1), default math/rand/v2
	RateLimit    RateLimit      // outbound hand-offs; zero: unlimited (see RateLimit)
	// Routes choose a smarthost per recipient (lanes.go); nil: all mail
	// goes through Deliverer.
	Routes Routes
	// Flush is FlushAuto (or ""), FlushSyncfs or FlushFdatasync; see
	// ChooseFlush. FlushForce allows syncfs on a filesystem not known to
	// honour it.
	Flush      string
	FlushForce bool
}

// metaVersion is written into every Meta; bump it on incompatible changes.
const metaVersion = 1

// Meta is the persisted state of one message: the trailer of msg/ID as
// committed, meta/ID.json once it changed.
type Meta struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Arrival time.Time `json:"arrival"`
	Origin  Origin    `json:"origin"`
	Envelope
	Prefix        []byte    `json:"prefix,omitempty"` // header prefix, before the body
	Size          int64     `json:"size"`             // prefix + body bytes
	Attempts      int       `json:"attempts"`
	NextAttempt   time.Time `json:"next_attempt,omitzero"`
	LastAttempt   time.Time `json:"last_attempt,omitzero"`
	Held          bool      `json:"held,omitempty"`
	DelayNotified bool      `json:"delay_notified,omitempty"`
	RemoteMTA     string    `json:"remote_mta,omitempty"`
	// Removed marks the final meta of a message being removed, written
	// just before meta/ID.json becomes the tombstone meta/ID.gone:
	// recovery obeys only a tombstone that says so (remove.go).
	Removed bool `json:"removed,omitempty"`
	// BodyCRC is the CRC-32C of the body (after the prefix), 8 hex digits;
	// "" for messages committed before it existed (bodycrc.go).
	BodyCRC string `json:"body_crc32c,omitempty"`
}

// Queue is an open spool. Its methods are safe for concurrent use.
type Queue struct {
	cfg  Config
	dir  string
	log  *slog.Logger
	now  func() time.Time
	rand func() float64

	lock   *os.File
	rootFD *os.File // the spool dir, for syncfs
	// subFDs are msg/ and meta/, open for the committer's fsyncs (an
	// open and a close fewer per batch).
	subFDs map[string]*os.File

	commits   chan *commitReq
	closing   chan struct{}
	closeOnce sync.Once
	committer sync.WaitGroup // the committer and the janitor

	// syncErrs counts failed syncfs calls (see commitReq.errs).
	syncErrs atomic.Uint64

	gcMu     sync.Mutex
	gcBodies []string // removed messages (tombstoned) whose bodies wait for the janitor
	// syncfs flushes the spool filesystem; tests swap it to count or fail.
	syncfs func(fd int) error
	// syncDirFD fsyncs msg/ or meta/ for the committer (nil: File.Sync);
	// tests swap it to slow a flush down.
	syncDirFD func(*os.File) error
	// freeBytes reports the space available in a directory's filesystem;
	// tests swap it.
	freeBytes func(dir string) (int64, error)
	batches   atomic.Int64 // number of group-commit flushes (observability, tests)
	// quarantined counts messages moved into corrupt/ since Open.
	quarantined atomic.Int64
	// flushStarted counts the committer's flushes as they start;
	// flushDurable is the count of the last one that made msg/ durable
	// (syncfs, or the fsync of msg/ in fdatasync mode). See spare.go.
	flushStarted atomic.Uint64
	flushDurable atomic.Uint64
	// flush is the flush mode's batch flush (flusher, flush.go): one
	// syncfs(2), or an fdatasync of every file. Open and RecheckFlush set
	// it from the filesystem type; only syncfs needs the filesystem's
	// cooperation.
	flush     atomic.Pointer[flusherBox]
	flushMu   sync.Mutex
	flushInfo FlushInfo

	deliverer atomic.Pointer[delivererBox]
	routes    atomic.Pointer[routesBox] // nil: everything takes the default (lanes.go)
	notifier  Notifier

	s      sched
	limit  limiter
	spares spares    // recycled message files, see spare.go
	free   freeCache // recent free space of the spool's filesystem
}

type delivererBox struct{ d Deliverer }

func (q *Queue) path(parts ...string) string {
	return filepath.Join(append([]string{q.dir}, parts...)...)
}
func (q *Queue) metaPath(id string) string { return q.path("meta", id+".json") }
func (q *Queue) gonePath(id string) string { return q.path("meta", id+".gone") }
func (q *Queue) bodyPath(id string) string { return q.path("msg", id) }

// Open locks the spool, creates its directories, and recovers (see
// recover): tmp/ leftovers are removed (they were never acknowledged),
// interrupted removals are finished, broken messages are quarantined into
// corrupt/, and every message is scheduled.
func Open(cfg Config) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("queue: Config.Dir is empty")
	}
	setDefaults(&cfg)
	q := &Queue{
		cfg: cfg, dir: cfg.Dir, log: cfg.Logger, now: cfg.Clock, rand: cfg.Rand,
		commits: make(chan *commitReq), closing: make(chan struct{}),
		syncfs: unix.Syncfs, notifier: cfg.Notifier, freeBytes: freeBytes,
	}
	q.deliverer.Store(&delivererBox{cfg.Deliverer})
	q.routes.Store(&routesBox{cfg.Routes})
	q.limit.set(cfg.RateLimit)
	q.s.init(&q.limit, q.newLaneLocked)
	if err := q.mkdirs(); err != nil {
		return nil, err
	}
	fi, err := ChooseFlush(q.dir, cfg.Flush, cfg.FlushForce)
	if err != nil {
		return nil, err
	}
	q.flushInfo = fi
	q.setFlusher(fi.Mode)
	q.logFlush(fi)
	if err := q.takeLock(); err != nil {
		return nil, err
	}
	root, err := os.Open(q.dir)
	if err != nil {
		q.lock.Close()
		return nil, fmt.Errorf("queue: open %s: %w", q.dir, err)
	}
	q.rootFD = root
	if err := q.recover(); err != nil {
		q.rootFD.Close()
		q.lock.Close()
		return nil, err
	}
	q.subFDs = map[string]*os.File{}
	for _, sub := range []string{"msg", "meta"} {
		f, err := os.Open(q.path(sub))
		if err != nil {
			q.closeFiles()
			return nil, fmt.Errorf("queue: open %s: %w", q.path(sub), err)
		}
		q.subFDs[sub] = f
	}
	q.committer.Add(2)
	go q.commitLoop()
	go q.janitor()
	return q, nil
}

func setDefaults(c *Config) {
	if c.MinBackoff <= 0 {
		c.MinBackoff = defaults.MinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaults.MaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.MaxAge <= 0 {
		c.MaxAge = defaults.MaxAge
	}
	if c.Concurrency <= 0 {
		c.Concurrency = defaults.Concurrency
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 30 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// mkdirs creates the layout and sets modes explicitly (umask-proof).
func (q *Queue) mkdirs() error {
	dirs := []struct {
		name string
		mode fs.FileMode
	}{
		{"", 0o711}, {"tmp", 0o700}, {"msg", 0o700}, {"meta", 0o700}, {"spare", 0o700},
		{"corrupt", 0o700}, {"maildrop", 0o733 | fs.ModeSticky}, {"public", 0o755},
	}
	for _, d := range dirs {
		p := q.path(d.name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return fmt.Errorf("queue: mkdir %s: %w", p, err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return fmt.Errorf("queue: chmod %s: %w", p, err)
		}
	}
	return nil
}

func (q *Queue) takeLock() error {
	p := q.path("lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("queue: open lock file %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is held by another relayd using the same state_dir", ErrLocked, p)
		}
		return fmt.Errorf("queue: lock %s: %w", p, err)
	}
	q.lock = f
	return nil
}

// Close stops the committer and releases the lock. Call it after Run has
// returned; Commits after Close fail with ErrClosed.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.closing)
		q.committer.Wait()
		q.spares.shutdown()
		// Delivered mail does not outlive the daemon in spare/, and the
		// next Open has nothing to check.
		if err := q.cleanSpare(nil); err != nil {
			q.log.Warn("queue: cannot empty spare/", "err", err)
		}
		q.closeFiles()
	})
	return nil
}

func (q *Queue) closeFiles() {
	for _, f := range q.subFDs {
		f.Close()
	}
	q.rootFD.Close()
	q.lock.Close() // closing the descriptor releases the flock
}

// syncSub fsyncs the spool's subdirectory sub (msg or meta).
func (q *Queue) syncSub(sub string) error {
	f := q.subFDs[sub]
	if f == nil {
		return syncDir(q.path(sub))
	}
	sync := q.syncDirFD
	if sync == nil {
		sync = (*os.File).Sync
	}
	if err := sync(f); err != nil {
		return fmt.Errorf("queue: fsync dir %s: %w", f.Name(), err)
	}
	return nil
}

func (q *Queue) writeMeta(m *Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("queue: encode meta %s: %w", m.ID, err)
	}
	// Group commit for updates too: the new meta is written to tmp/ and
	// handed to the committer, whose batch flush (one syncfs or the
	// batch's fdatasyncs, renames, one fsync of meta/) it shares with
	// concurrent commits and updates. The per-attempt write before each
	// delivery costs no flush of its own.
	errs := q.syncErrs.Load() // see commitReq.errs
	f, err := os.CreateTemp(q.path("tmp"), m.ID+".json.*.upd")
	if err != nil {
		return noSpace(fmt.Errorf("queue: write meta %s: %w", m.ID, err))
	}
	tmp := f.Name()
	// The descriptor stays open for the committer's fdatasync (in
	// fdatasync mode) and is closed once the batch is done.
	defer f.Close()
	if _, err = f.Write(b); err != nil {
		_ = os.Remove(tmp)
		return noSpace(fmt.Errorf("queue: write meta %s: %w", m.ID, err))
	}
	req := &commitReq{id: m.ID, tmp: tmp, f: f, dst: q.metaPath(m.ID), update: true, errs: errs, done: make(chan struct{})}
	select {
	case q.commits <- req:
	case <-q.closing:
		_ = os.Remove(tmp)
		return atomicWrite(q.path("tmp"), q.metaPath(m.ID), b)
	}
	<-req.done
	return req.err
}
