package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"relayd/conf"
	"relayd/queue"
)

// oldStateDir is relayd's built-in state_dir before issue 17 made it the
// package's /var/lib/relayd. Mail a daemon held there (e.g. one started by
// the README's first command of an older version) is imported at start.
const oldStateDir = "/var/spool/relayd"

// importJournal, in the old spool, records "OLD-ID NEW-ID" before each
// import is committed and "OLD-ID NEW-ID done" after, so that an import
// interrupted after its commit is finished, not repeated.
const importJournal = "imported-to-state_dir.journal"

// spoolImport moves every message of the spool at from into q, through the
// queue's own API (no knowledge of the spool's files):
//
//  1. the new message's ID is appended to the journal in from/ and fsynced;
//  2. its bytes (prefix + body, as they go on the wire) and envelope (each
//     recipient with its state) are committed to q under that ID;
//  3. "done" is appended to the journal, and the old message is deleted.
//
// A message whose journal says done, or names a message that is in q,
// went through step 2 (and crashed or failed at step 3): it is only
// deleted, even if the new copy has been delivered meanwhile. So nothing
// is lost (the old copy goes only once the new one is durable) and nothing
// is imported twice. The arrival time and attempt count start afresh; the
// hold flag is kept.
type spoolImport struct {
	from string
	q    *queue.Queue
	log  *slog.Logger
	// del deletes a message from the old spool (a test makes it fail).
	del func(old *queue.Queue, id string) error
}

// importOldSpool imports the mail in oldStateDir into q (whose spool is
// stateDir) if there is any and stateDir is the default one: a daemon
// given a state_dir of its own (a test's, another instance's) never takes
// mail from the old default. Failures are logged: the daemon runs on, and
// the mail stays where it is for the next start.
func importOldSpool(q *queue.Queue, stateDir string, log *slog.Logger) {
	if filepath.Clean(stateDir) != conf.DefaultStateDir {
		return
	}
	imp := &spoolImport{from: oldStateDir, q: q, log: log}
	if _, err := imp.run(context.Background()); err != nil {
		log.Warn("mail in the old default state_dir was not imported; it stays there for the next start",
			"old_state_dir", oldStateDir, "state_dir", stateDir, "err", err)
	}
}

// run imports what there is and returns how many messages it imported.
func (s *spoolImport) run(ctx context.Context) (int, error) {
	n := 0
	err := queue.ReadOnlyList(s.from, func(*queue.Meta) error { n++; return nil })
	if errors.Is(err, fs.ErrNotExist) || (err == nil && n == 0) {
		return 0, nil // no old spool, or nothing in it
	}
	if err != nil {
		return 0, err
	}
	// Opening the old spool takes its lock: a daemon still running on it
	// is an error here, not a race.
	old, err := queue.Open(queue.Config{Dir: s.from, Logger: s.log, Concurrency: 1})
	if err != nil {
		return 0, err
	}
	defer old.Close()
	done, err := s.readJournal()
	if err != nil {
		return 0, err
	}
	var metas []*queue.Meta
	if err := old.List(func(m *queue.Meta) error { metas = append(metas, m); return nil }); err != nil {
		return 0, err
	}
	imported := 0
	for _, m := range metas {
		if j, ok := done[m.ID]; ok {
			if _, err := s.q.Get(j.id); j.done || err == nil {
				if err := s.delete(old, m.ID); err != nil {
					return imported, err
				}
				continue
			}
		}
		id, err := s.importOne(ctx, old, m)
		if err != nil {
			return imported, fmt.Errorf("message %s: %w", m.ID, err)
		}
		imported++
		if err := s.journal(m.ID, id+" done"); err != nil {
			return imported, err
		}
		s.log.Info("imported a message from the old default state_dir",
			"old_id", m.ID, "id", id, "old_state_dir", s.from)
		if err := s.delete(old, m.ID); err != nil {
			return imported, err
		}
	}
	s.log.Info("imported the mail of the old default state_dir; the directory may be removed",
		"old_state_dir", s.from, "imported", imported)
	return imported, nil
}

func (s *spoolImport) delete(old *queue.Queue, id string) error {
	del := s.del
	if del == nil {
		del = func(old *queue.Queue, id string) error { return old.Delete(id) }
	}
	if err := del(old, id); err != nil {
		return fmt.Errorf("imported message %s not deleted from %s: %w", id, s.from, err)
	}
	return nil
}

func (s *spoolImport) importOne(ctx context.Context, old *queue.Queue, m *queue.Meta) (string, error) {
	r, err := old.OpenMessage(m.ID)
	if err != nil {
		return "", err
	}
	defer r.Close()
	d, err := s.q.Create()
	if err != nil {
		return "", err
	}
	if err := s.journal(m.ID, d.ID()); err != nil {
		d.Abort()
		return "", err
	}
	if _, err := io.Copy(d, r); err != nil {
		d.Abort()
		return "", err
	}
	if err := d.Commit(ctx, m.Envelope, nil, m.Origin); err != nil {
		return "", err
	}
	if m.Held {
		if err := s.q.Hold(d.ID()); err != nil {
			s.log.Warn("imported message not held as it was", "id", d.ID(), "err", err)
		}
	}
	return d.ID(), nil
}

func (s *spoolImport) journal(oldID, newID string) error {
	p := filepath.Join(s.from, importJournal)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%s %s\n", oldID, newID); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir, err := os.Open(s.from)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync() // the journal's directory entry, the first time
}

// journalEntry is what the journal says of one old message.
type journalEntry struct {
	id   string // the new ID
	done bool   // committed in the new spool
}

// readJournal returns what the journal says of the imports begun before.
func (s *spoolImport) readJournal() (map[string]journalEntry, error) {
	done := map[string]journalEntry{}
	f, err := os.Open(filepath.Join(s.from, importJournal))
	if errors.Is(err, fs.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			// A later line for the same message wins.
			done[f[0]] = journalEntry{id: f[1], done: len(f) == 3 && f[2] == "done"}
		}
	}
	return done, sc.Err()
}
