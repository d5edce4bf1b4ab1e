// Package pickup is the maildrop daemon: it moves the messages the
// sendmail command left in STATE_DIR/maildrop (while the daemon was down)
// through the intake.
//
// The files are untrusted input, written by any local user: the same
// address checks and limits apply as on the network, the submitting uid is
// the file's owner (never what the file claims), a file is opened once
// without following symlinks or blocking on FIFOs, and read only through
// that descriptor. A file is removed only after its message is committed
// (a crash in between gives a duplicate, never a loss); one that can never
// be accepted gets a failure notice and is moved to corrupt/, never
// silently deleted.
package pickup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/cleanup"
	"relayd/envelope"
	"relayd/internal/reply"
	"relayd/sendmail"
)

// Interval is how often the maildrop is scanned unless Config says
// otherwise. The sendmail command only uses the maildrop while the daemon
// is down, so this is the delay after a start, not on the normal path.
const Interval = 2 * time.Second

// Intake is what the pickup needs of the intake (*cleanup.Cleanup).
type Intake interface {
	Sender(addr string) (string, *smtp.SMTPError)
	Recipient(addr string) (string, *smtp.SMTPError)
	Submit(ctx context.Context, sub *cleanup.Submission, r io.Reader) (string, error)
}

// Config is what a Pickup needs.
type Config struct {
	Dir     string // STATE_DIR/maildrop
	Corrupt string // STATE_DIR/corrupt, the quarantine
	Intake  Intake
	// Notify queues a failure notice for a file that can never be
	// accepted (its sender was told "sent"); nil: none.
	Notify   func(context.Context, envelope.Notice) error
	Logger   *slog.Logger  // nil: discard
	Interval time.Duration // between scans; 0: Interval
}

// Pickup moves messages that the sendmail command left in the maildrop
// through the intake (see the package doc).
type Pickup struct {
	dir      string
	corrupt  string
	intake   Intake
	notify   func(context.Context, envelope.Notice) error
	log      *slog.Logger
	interval time.Duration

	mu       sync.Mutex
	busy     map[string]bool // files whose one() has not returned (maybe stuck)
	reported map[string]bool // files whose lasting problem was logged already
}

// Bounds on one maildrop file. A regular file's read cannot block, but the
// intake behind it can stall, and the files are anyone's: each file gets a
// time budget that grows with its size (pickupMinRate, like smtpd's DATA
// deadline) and is read only up to the size fstat gave at open, so a file
// that keeps growing cannot keep the pickup reading.
const (
	pickupBaseTimeout = time.Minute
	pickupMinRate     = 1 << 20 // bytes per second
)

// New returns a Pickup for cfg; Run starts it.
func New(cfg Config) *Pickup {
	if cfg.Interval <= 0 {
		cfg.Interval = Interval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pickup{dir: cfg.Dir, corrupt: cfg.Corrupt, intake: cfg.Intake, notify: cfg.Notify,
		log: cfg.Logger, interval: cfg.Interval}
}

// fileBudget is how long one file of size bytes may take.
func fileBudget(size int64) time.Duration {
	return pickupBaseTimeout + time.Duration(size/pickupMinRate)*time.Second
}

// Run scans the maildrop at once and then every interval, until ctx is
// done.
func (p *Pickup) Run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.scan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pickup) scan(ctx context.Context) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		p.log.Error("maildrop unreadable", "dir", p.dir, "err", err)
		return
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		// Not only regular files: anything else (symlink, FIFO,
		// directory) is quarantined by one, not left to pile up.
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		} else if strings.HasPrefix(e.Name(), ".tmp.") {
			p.removeStale(e)
		}
	}
	sort.Strings(names) // oldest first: names start with the time
	p.forget(names)
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		p.oneBounded(ctx, name)
	}
}

// staleTemp is the age after which a temp file in the maildrop is removed:
// the sendmail command stages every message there (uncommitted) and removes
// it when done, so an old one was left by a killed command.
const staleTemp = 24 * time.Hour

func (p *Pickup) removeStale(e fs.DirEntry) {
	fi, err := e.Info()
	if err != nil || time.Since(fi.ModTime()) < staleTemp {
		return
	}
	if err := os.Remove(filepath.Join(p.dir, e.Name())); err == nil {
		p.log.Info("removed a stale maildrop temp file", "file", filepath.Join(p.dir, e.Name()), "age", time.Since(fi.ModTime()).Round(time.Second))
	}
}

// oneBounded runs one() for name under the file's time budget; if it has
// not returned by then (a file system that blocks, an intake that stalls),
// the scan goes on without it: one stuck file never holds up the others.
// The file stays marked busy, and is not taken again, until one() returns.
func (p *Pickup) oneBounded(ctx context.Context, name string) {
	p.mu.Lock()
	if p.busy == nil {
		p.busy = map[string]bool{}
	}
	if p.busy[name] {
		p.mu.Unlock()
		return
	}
	p.busy[name] = true
	p.mu.Unlock()
	done := make(chan struct{})
	budget := make(chan time.Duration, 1)
	go func() {
		defer close(done)
		defer func() {
			p.mu.Lock()
			delete(p.busy, name)
			p.mu.Unlock()
		}()
		p.one(ctx, name, budget)
	}()
	wait := pickupBaseTimeout // until one() knows the size
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case d := <-budget:
			t.Reset(d)
		case <-t.C:
			p.logOnce(name, "maildrop file is taking too long; going on with the others", "file", filepath.Join(p.dir, name))
			return
		case <-ctx.Done():
			return
		}
	}
}

// logOnce logs a lasting problem with a maildrop file at ERROR the first
// time only: a file that stays (unreadable, not movable) would otherwise
// log on every scan, forever. The memory is dropped with the file.
func (p *Pickup) logOnce(name, msg string, args ...any) {
	p.mu.Lock()
	if p.reported == nil {
		p.reported = map[string]bool{}
	}
	seen := p.reported[name]
	p.reported[name] = true
	p.mu.Unlock()
	if seen {
		p.log.Debug(msg, args...)
		return
	}
	p.log.Error(msg, args...)
}

// forget drops the log-once memory of files no longer in the maildrop.
func (p *Pickup) forget(names []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reported) == 0 {
		return
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	for n := range p.reported {
		if !present[n] {
			delete(p.reported, n)
		}
	}
}

// one submits one maildrop file. It is removed only after the message is
// committed (a crash in between gives a duplicate, never a loss). A file
// that can never be accepted is moved to corrupt/ and logged, never
// silently deleted. The file is opened once: everything read from it,
// including the copy attached to a failure notice, comes from that one
// descriptor, never from the path again (its owner can rename a FIFO or a
// symlink over it at any moment). budget receives the file's time budget
// once its size is known.
func (p *Pickup) one(ctx context.Context, name string, budget chan<- time.Duration) {
	path := filepath.Join(p.dir, name)
	// Anyone can create entries here, and swap them between the scan and
	// the open: never follow a symlink (it could point at another user's
	// file, or at the queue), and never block on a FIFO.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENXIO):
			p.quarantine(path, name, fmt.Errorf("maildrop entry is a symlink or a socket: %w", err))
		case errors.Is(err, fs.ErrPermission):
			// Not written by the sendmail command (it makes its files
			// 0644): quarantine it rather than fail on it every scan.
			p.quarantine(path, name, fmt.Errorf("maildrop file unreadable by the daemon: %w", err))
		case errors.Is(err, fs.ErrNotExist):
			// Gone between the scan and the open.
		default:
			p.logOnce(name, "maildrop file unreadable", "file", path, "err", err)
		}
		return
	}
	defer f.Close()
	uid, size, err := dropOwner(f)
	if err != nil {
		p.quarantine(path, name, err)
		return
	}
	b := fileBudget(size)
	select {
	case budget <- b:
	default:
	}
	fctx, cancel := context.WithTimeout(ctx, b)
	defer cancel()
	src := func() io.Reader { return &ctxReader{ctx: fctx, r: io.NewSectionReader(f, 0, size)} }
	env, body, err := sendmail.ReadDrop(src())
	if err != nil {
		p.quarantine(path, name, err)
		return
	}
	qenv, serr := p.mapEnvelope(env)
	if serr != nil {
		p.reject(fctx, path, name, env, serr, size, src)
		return
	}
	sub := &cleanup.Submission{Envelope: qenv, Origin: envelope.FromLocal, LocalUID: uid}
	id, err := p.intake.Submit(fctx, sub, body)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			p.reject(fctx, path, name, env, err, size, src)
		} else if fctx.Err() != nil && ctx.Err() == nil {
			p.logOnce(name, "maildrop file took longer than its time budget; will retry", "file", path, "budget", b, "err", err)
		}
		// 4xx: leave it for the next scan.
		return
	}
	if err := os.Remove(path); err != nil {
		p.log.Error("maildrop file queued but not removed: it will be queued again", "file", path, "id", id, "err", err)
		return
	}
	p.log.Info("picked up from maildrop", "id", id, "uid", uid)
}

// ctxReader fails reads once ctx is done: the deadline of a file's reads.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("maildrop read: %w", err)
	}
	return c.r.Read(b)
}

// dropOwner returns the uid that submitted an open maildrop file: its owner.
// Only a regular file with a single link is accepted; a hard link to
// someone else's file would carry that user's uid, not the submitter's.
func dropOwner(f *os.File) (uid int, size int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return -1, 0, fmt.Errorf("maildrop file stat: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return -1, 0, fmt.Errorf("maildrop entry is not a regular file (%s)", fi.Mode().Type())
	case !ok:
		return -1, 0, errors.New("maildrop file: no owner information")
	case st.Nlink != 1:
		return -1, 0, fmt.Errorf("maildrop file has %d links, want 1", st.Nlink)
	}
	return int(st.Uid), fi.Size(), nil
}

// mapEnvelope checks and maps the addresses a maildrop file gives, as the
// intake does for SMTP.
func (p *Pickup) mapEnvelope(env sendmail.Envelope) (envelope.Envelope, error) {
	from, serr := p.intake.Sender(env.From)
	if serr != nil {
		return envelope.Envelope{}, fmt.Errorf("sender %q: %w", env.From, serr)
	}
	q := envelope.Envelope{From: from, Ret: env.Ret, EnvID: env.EnvID}
	var notify []string
	if env.Notify != "" {
		notify = strings.Split(strings.ToUpper(env.Notify), ",")
	}
	seen := map[string]bool{}
	for _, r := range env.Rcpts {
		addr, serr := p.intake.Recipient(r)
		if serr != nil {
			return envelope.Envelope{}, fmt.Errorf("recipient %q: %w", r, serr)
		}
		if seen[addr] {
			continue
		}
		seen[addr] = true
		q.Rcpts = append(q.Rcpts, envelope.Recipient{Addr: addr, Notify: notify, State: envelope.Pending})
	}
	return q, nil
}

// reject handles a maildrop message that can never be accepted. Its
// sender was told "sent" when the sendmail command exited 0, so the sender
// (or, for a local or unreachable sender, the admin) gets a failure notice
// before the file goes to quarantine. If the notice cannot be queued yet,
// the file stays for the next scan. The notice's copy of the message is
// read through src (the descriptor opened by one, bounded by size).
func (p *Pickup) reject(ctx context.Context, path, name string, env sendmail.Envelope, cause error, size int64, src func() io.Reader) {
	if p.notify != nil && env.From != "" && !strings.EqualFold(env.Notify, "NEVER") {
		why := reply.Reply{Text: cause.Error()}
		var se *smtp.SMTPError
		if errors.As(cause, &se) {
			why = reply.FromSMTP(se)
		}
		n := envelope.Notice{Kind: envelope.NoticeFailed, ID: "maildrop-" + name, From: env.From, Arrival: env.Submitted,
			EnvID: env.EnvID, Ret: env.Ret, LastAttempt: time.Now(), Open: dropOpener(src), Size: size}
		for _, r := range env.Rcpts {
			n.Rcpts = append(n.Rcpts, envelope.Recipient{Addr: r, State: envelope.Failed, LastReply: why.String(), Reply: why})
		}
		if err := p.notify(ctx, n); err != nil {
			p.logOnce(name, "maildrop file rejected; its failure notice could not be queued yet, keeping it", "file", path, "cause", cause, "err", err)
			return
		}
	}
	p.quarantine(path, name, cause)
}

// dropOpener returns the message part of an open maildrop file, for the
// notice: it reads the descriptor already open (src), never the path.
func dropOpener(src func() io.Reader) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		_, msg, err := sendmail.ReadDrop(src())
		if err != nil {
			return nil, err
		}
		return io.NopCloser(msg), nil
	}
}

func (p *Pickup) quarantine(path, name string, cause error) {
	dst := filepath.Join(p.corrupt, "maildrop-"+name)
	if err := os.Rename(path, dst); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			p.logOnce(name, "maildrop file rejected and could not be quarantined", "file", path, "err", err, "cause", cause)
		}
		return
	}
	p.log.Error("maildrop file rejected, moved to quarantine", "file", dst, "cause", cause)
}
