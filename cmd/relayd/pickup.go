package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/cleanup"
	"relayd/queue"
	"relayd/sendmail"
)

// pickupInterval is how often the maildrop is scanned. The sendmail
// command only uses the maildrop while the daemon is down, so this is the
// delay after a start, not on the normal path.
const pickupInterval = 2 * time.Second

// pickup moves messages that the sendmail command left in the maildrop
// (while the daemon was down) through the intake. The files are untrusted
// input: the same address checks and limits apply as on the network, and
// the submitting uid is the file's owner, not what the file claims.
type pickup struct {
	dir      string // STATE_DIR/maildrop
	corrupt  string // STATE_DIR/corrupt
	intake   *cleanup.Cleanup
	notify   func(context.Context, queue.Notice) error // failure notices; nil: none
	log      *slog.Logger
	interval time.Duration
}

func (p *pickup) run(ctx context.Context) {
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

func (p *pickup) scan(ctx context.Context) {
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
		}
	}
	sort.Strings(names) // oldest first: names start with the time
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		p.one(ctx, name)
	}
}

// one submits one maildrop file. It is removed only after the message is
// committed (a crash in between gives a duplicate, never a loss). A file
// that can never be accepted is moved to corrupt/ and logged, never
// silently deleted.
func (p *pickup) one(ctx context.Context, name string) {
	path := filepath.Join(p.dir, name)
	// Anyone can create entries here, and swap them between the scan and
	// the open: never follow a symlink (it could point at another user's
	// file, or at the queue), and never block on a FIFO.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENXIO) {
			p.quarantine(path, name, fmt.Errorf("maildrop entry is a symlink or a socket: %w", err))
			return
		}
		p.log.Error("maildrop file unreadable", "file", path, "err", err)
		return
	}
	defer f.Close()
	uid, err := dropOwner(f)
	if err != nil {
		p.quarantine(path, name, err)
		return
	}
	env, body, err := sendmail.ReadDrop(f)
	if err != nil {
		p.quarantine(path, name, err)
		return
	}
	qenv, serr := p.envelope(env)
	if serr != nil {
		p.reject(ctx, path, name, env, serr)
		return
	}
	sub := &cleanup.Submission{Envelope: qenv, Origin: queue.FromLocal, LocalUID: uid}
	id, err := p.intake.Submit(ctx, sub, body)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			p.reject(ctx, path, name, env, err)
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

// dropOwner returns the uid that submitted an open maildrop file: its owner.
// Only a regular file with a single link is accepted; a hard link to
// someone else's file would carry that user's uid, not the submitter's.
func dropOwner(f *os.File) (int, error) {
	fi, err := f.Stat()
	if err != nil {
		return -1, fmt.Errorf("maildrop file stat: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return -1, fmt.Errorf("maildrop entry is not a regular file (%s)", fi.Mode().Type())
	case !ok:
		return -1, errors.New("maildrop file: no owner information")
	case st.Nlink != 1:
		return -1, fmt.Errorf("maildrop file has %d links, want 1", st.Nlink)
	}
	return int(st.Uid), nil
}

func (p *pickup) envelope(env sendmail.Envelope) (queue.Envelope, error) {
	from, serr := p.intake.Sender(env.From)
	if serr != nil {
		return queue.Envelope{}, fmt.Errorf("sender %q: %w", env.From, serr)
	}
	q := queue.Envelope{From: from, Ret: env.Ret, EnvID: env.EnvID}
	var notify []string
	if env.Notify != "" {
		notify = strings.Split(strings.ToUpper(env.Notify), ",")
	}
	seen := map[string]bool{}
	for _, r := range env.Rcpts {
		addr, serr := p.intake.Recipient(r)
		if serr != nil {
			return queue.Envelope{}, fmt.Errorf("recipient %q: %w", r, serr)
		}
		if seen[addr] {
			continue
		}
		seen[addr] = true
		q.Rcpts = append(q.Rcpts, queue.Recipient{Addr: addr, Notify: notify, State: queue.Pending})
	}
	return q, nil
}

// reject handles a maildrop message that can never be accepted. Its
// sender was told "sent" when the sendmail command exited 0, so the sender
// (or, for a local or unreachable sender, the admin) gets a failure notice
// before the file goes to quarantine. If the notice cannot be queued yet,
// the file stays for the next scan.
func (p *pickup) reject(ctx context.Context, path, name string, env sendmail.Envelope, cause error) {
	if p.notify != nil && env.From != "" && !strings.EqualFold(env.Notify, "NEVER") {
		reply := cause.Error()
		var se *smtp.SMTPError
		if errors.As(cause, &se) {
			reply = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		}
		n := queue.Notice{Kind: queue.NoticeFailed, ID: "maildrop-" + name, From: env.From, Arrival: env.Submitted,
			EnvID: env.EnvID, Ret: env.Ret, LastAttempt: time.Now(), Open: dropOpener(path)}
		for _, r := range env.Rcpts {
			n.Rcpts = append(n.Rcpts, queue.Recipient{Addr: r, State: queue.Failed, LastReply: reply})
		}
		if fi, err := os.Stat(path); err == nil {
			n.Size = fi.Size()
		}
		if err := p.notify(ctx, n); err != nil {
			p.log.Error("maildrop file rejected; its failure notice could not be queued yet, keeping it", "file", path, "cause", cause, "err", err)
			return
		}
	}
	p.quarantine(path, name, cause)
}

// dropOpener returns the message part of a maildrop file, for the notice.
func dropOpener(path string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		_, msg, err := sendmail.ReadDrop(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{msg, f}, nil
	}
}

func (p *pickup) quarantine(path, name string, cause error) {
	dst := filepath.Join(p.corrupt, "maildrop-"+name)
	if err := os.Rename(path, dst); err != nil {
		p.log.Error("maildrop file rejected and could not be quarantined", "file", path, "err", err, "cause", cause)
		return
	}
	p.log.Error("maildrop file rejected, moved to quarantine", "file", dst, "cause", cause)
}
