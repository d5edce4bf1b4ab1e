package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// recover scans the spool at Open:
//
//   - tmp/ leftovers are deleted: they were never acknowledged. So are
//     spare/ files (finished messages kept for reuse, see spare.go).
//   - meta/ID.gone (a removal a crash interrupted) finishes: msg/ID is
//     unlinked, that is made durable, then the tombstone goes; but only a
//     tombstone that is the message's final meta, marked Removed. Any other
//     (a stray file, one of an older relayd, a damaged one) is quarantined
//     with the message's files: obeying it could delete live mail.
//   - meta/ID.json without msg/ID is quarantined: a committed message lost
//     its body. Other names in meta/ are quarantined too.
//   - every msg/ID is loaded (meta/ID.json, else its trailer) and checked
//     against its body; a broken one (unreadable trailer and no
//     meta/ID.json, bad meta, short body, a name that is no ID) is
//     quarantined, never deleted. The rest is scheduled.
//
// Directories are read in chunks: memory does not grow with the queue.
func (q *Queue) recover() error {
	linked, err := q.linkedFromMsg()
	if err != nil {
		return err
	}
	if err := q.cleanTmp(linked); err != nil {
		return err
	}
	if err := q.cleanSpare(linked); err != nil {
		return err
	}
	// A tombstone seen now may not be durable yet (the previous process
	// was killed): make it so before unlinking the bodies it stands for.
	if err := syncDir(q.path("meta")); err != nil {
		return err
	}
	var tombs []string // interrupted removals: few, bounded by the janitor's backlog
	err = forEachName(q.path("meta"), func(name string) error {
		if id, ok := strings.CutSuffix(name, ".gone"); ok && validID(id) {
			if err := q.checkTombstone(id); err != nil {
				if passingFault(err) {
					return fmt.Errorf("queue: cannot read tombstone %s (fix it and start again): %w", name, err)
				}
				q.quarantineTombstone(id, err)
				return nil
			}
			if err := os.Remove(q.bodyPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("queue: finish removal of %s: %w", id, err)
			}
			tombs = append(tombs, name)
			return nil
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !validID(id) {
			q.quarantineFile("meta", name, errors.New("file name is not a message ID"))
			return nil
		}
		if _, err := os.Lstat(q.bodyPath(id)); errors.Is(err, fs.ErrNotExist) {
			q.quarantine(id, errors.New("meta without its body (msg/ID is missing)"))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(tombs) > 0 {
		// The bodies' unlinks must be durable before their tombstones go,
		// or a crash could bring a removed message back from its trailer.
		if err := syncDir(q.path("msg")); err != nil {
			return err
		}
		for _, name := range tombs {
			if err := os.Remove(q.path("meta", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("queue: remove tombstone %s: %w", name, err)
			}
		}
		q.log.Info("queue: finished removals a restart interrupted", "messages", len(tombs))
	}
	return forEachName(q.path("msg"), func(name string) error {
		if !validID(name) {
			q.quarantineFile("msg", name, errors.New("file name is not a message ID"))
			return nil
		}
		m, err := loadMessage(q.dir, name)
		if err != nil {
			if passingFault(err) {
				// Setting a good message aside for a fault of the moment
				// would be worse than not starting: refuse, say why.
				return fmt.Errorf("queue: cannot read message %s, not quarantining it for a passing fault (fix it and start again): %w", name, err)
			}
			q.quarantine(name, err)
			return nil
		}
		q.s.add(name, firstDue(m, q.now()), m.Held, q.lanesOf(m))
		return nil
	})
}

// quarantine moves a broken message (meta/ID.json and msg/ID, whichever
// exist) into corrupt/. Nothing there is ever deleted by relayd.
func (q *Queue) quarantine(id string, why error) {
	q.log.Error("queue: quarantining broken message", "id", id, "to", q.path("corrupt"), "err", why)
	q.quarantined.Add(1)
	// The body first: if a crash stops us halfway, the meta left behind is
	// quarantined at the next Open (meta without body), whereas a body
	// left alone would be delivered again from its committed trailer.
	for _, f := range []struct{ from, to string }{
		{q.bodyPath(id), q.path("corrupt", id)},
		{q.metaPath(id), q.path("corrupt", id+".json")},
	} {
		if err := os.Rename(f.from, f.to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			q.log.Error("queue: quarantine failed", "file", f.from, "err", err)
		}
	}
	q.syncQuarantine()
}

// quarantineFile moves one stray file of sub/ into corrupt/.
func (q *Queue) quarantineFile(sub, name string, why error) {
	from := q.path(sub, name)
	q.log.Error("queue: quarantining broken message", "file", from, "to", q.path("corrupt"), "err", why)
	if err := os.Rename(from, q.path("corrupt", name)); err != nil {
		q.log.Error("queue: quarantine failed", "file", from, "err", err)
		return
	}
	q.syncQuarantine()
}

func (q *Queue) syncQuarantine() {
	for _, d := range []string{"corrupt", "meta", "msg"} {
		_ = syncDir(q.path(d))
	}
}

// linkedFromMsg returns the inode numbers of the files in msg/ when tmp/ or
// spare/ has anything to clean, else nil. On a filesystem without a
// journal, a crash can leave a file under both its old name (tmp/ or
// spare/) and its committed one (msg/ID) with a link count of 1 on disk:
// unlinking the old name would free the message's inode. Such a name is
// left alone (fsck repairs the count) rather than risk an acknowledged
// message.
func (q *Queue) linkedFromMsg() (map[uint64]bool, error) {
	dirty := false
	for _, d := range []string{"tmp", "spare"} {
		if err := forEachName(q.path(d), func(string) error { dirty = true; return errStop }); err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
	}
	if !dirty {
		return nil, nil
	}
	inodes := map[uint64]bool{}
	err := forEachName(q.path("msg"), func(name string) error {
		if ino, ok := inode(q.path("msg", name)); ok {
			inodes[ino] = true
		}
		return nil
	})
	return inodes, err
}

var errStop = errors.New("stop")

// inode returns path's inode number.
func inode(path string) (uint64, bool) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}

// keepLinked reports (and logs) whether path is also a file in msg/.
func (q *Queue) keepLinked(path string, linked map[uint64]bool) bool {
	if linked == nil {
		return false
	}
	if ino, ok := inode(path); ok && linked[ino] {
		q.log.Warn("queue: leftover is also a committed message (a crash on a filesystem without a journal): left in place, run fsck", "file", path)
		return true
	}
	return false
}

func (q *Queue) cleanTmp(linked map[uint64]bool) error {
	ents, err := os.ReadDir(q.path("tmp"))
	if err != nil {
		return fmt.Errorf("queue: read tmp: %w", err)
	}
	for _, e := range ents {
		p := q.path("tmp", e.Name())
		if q.keepLinked(p, linked) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("queue: remove leftover %s: %w", p, err)
		}
		q.log.Info("queue: removed unacknowledged leftover", "file", p)
	}
	return nil
}

// readMetaID reads the current meta of a valid ID; a message that does not
// exist (or is being removed) is ErrNotFound.
func (q *Queue) readMetaID(id string) (*Meta, error) { return loadMessage(q.dir, id) }

// passingFault reports errors that say nothing about the message itself:
// out of file descriptors or memory, or no permission (relayd started as
// the wrong user). Recovery stops on them instead of quarantining.
func passingFault(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EACCES, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkTombstone says whether meta/ID.gone is the final meta of message
// id, written by removeMessage (Removed set); nil means obey it.
func (q *Queue) checkTombstone(id string) error {
	p := q.gonePath(id)
	b, err := readSpoolFile(p)
	if err != nil {
		return err
	}
	m, err := decodeMeta(b, p)
	if err != nil {
		return err
	}
	if m.ID != id {
		return fmt.Errorf("tombstone %s says ID %q", p, m.ID)
	}
	if !m.Removed {
		return fmt.Errorf("tombstone %s does not say the message was removed (pending recipients: %v)", p, hasPending(m))
	}
	return nil
}

// quarantineTombstone moves a tombstone that must not be obeyed into
// corrupt/ with the message it stands beside (msg/ID, meta/ID.json), so
// nothing is deleted or delivered on its word; the admin decides.
func (q *Queue) quarantineTombstone(id string, why error) {
	if _, err := os.Lstat(q.bodyPath(id)); err == nil {
		q.quarantine(id, fmt.Errorf("stray tombstone beside the message, not obeyed: %w", why))
	}
	q.quarantineFile("meta", id+".gone", why)
}
