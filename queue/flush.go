package queue

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Flush modes (Config.Flush, queue.flush). See the package doc, "Group
// commit", for what each flushes and why the choice depends on the
// filesystem.
const (
	FlushAuto      = "auto"      // syncfs where the filesystem is known to honour it, else fdatasync
	FlushSyncfs    = "syncfs"    // one syncfs(2) per batch
	FlushFdatasync = "fdatasync" // fdatasync(2) of every file of the batch, by the committer
)

// Filesystem magic numbers (statfs(2) f_type, linux/magic.h).
const (
	magicExt4    = 0xef53 // ext2, ext3 and ext4 share it
	magicXFS     = 0x58465342
	magicBtrfs   = 0x9123683e
	magicTmpfs   = 0x01021994
	magicFUSE    = 0x65735546
	magicNFS     = 0x6969
	magicOverlay = 0x794c7630
	magicCIFS    = 0xff534d42
	magicSMB2    = 0xfe534d42
	magicZFS     = 0x2fc12fc1
	magicCeph    = 0x00c36400
	magic9P      = 0x01021997
)

// fsNames names the filesystems the flush choice knows about.
var fsNames = map[int64]string{
	magicExt4: "ext4", magicXFS: "xfs", magicBtrfs: "btrfs", magicTmpfs: "tmpfs",
	magicFUSE: "fuse", magicNFS: "nfs", magicOverlay: "overlay", magicCIFS: "cifs",
	magicSMB2: "smb2", magicZFS: "zfs", magicCeph: "ceph", magic9P: "9p",
}

// syncfsHonoured says, per filesystem, whether syncfs(2) writes back the
// data of every file on it before it returns. That is what the kernel's
// sync_filesystem() does for a filesystem with its own page cache and a
// sync_fs that commits its journal: ext4, xfs, btrfs. tmpfs has no stable
// storage at all: both modes are no-ops there against a process crash (the
// page cache is the store) and nothing survives a reboot, so the cheaper
// syncfs is as good (Open warns). Known not to:
//   - fuse: an ordinary /dev/fuse server never receives syncfs (the kernel
//     forwards FUSE_SYNCFS only for virtiofs); data it buffers is lost
//     while the renames persist (gocryptfs, mergerfs, sshfs, LazyFS);
//   - overlay: syncfs reaches the upper filesystem's sync_fs but not the
//     writeback of the upper files' data;
//   - nfs, cifs/smb2, ceph, 9p: network filesystems whose durability is the
//     server's, reached by fsync/COMMIT of each file;
//   - zfs and anything else: not checked, so not trusted.
var syncfsHonoured = map[int64]bool{
	magicExt4: true, magicXFS: true, magicBtrfs: true, magicTmpfs: true,
}

// FlushInfo is the flush mode a spool uses and why (logged at Open,
// reported by relayd check).
type FlushInfo struct {
	Mode   string // FlushSyncfs or FlushFdatasync
	FSType int64  // statfs f_type of the spool's filesystem
	FS     string // its name, or "unknown (0x...)"
	Reason string // one sentence for the log and relayd check
	// Warning is set when the mode is allowed but risky (syncfs forced
	// on a filesystem not known to honour it, a tmpfs spool).
	Warning string
}

func fsName(t int64) string {
	if n, ok := fsNames[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown (0x%x)", t)
}

// ErrFlushRefused is returned (wrapped) by ChooseFlush and Open when
// queue.flush = "syncfs" names a filesystem not known to honour syncfs and
// queue.flush_force is not set.
var ErrFlushRefused = errors.New("queue: syncfs refused on this filesystem")

// ChooseFlush decides the flush mode for the spool in dir (which must
// exist): mode is "auto" (or ""), "syncfs" or "fdatasync"; force allows
// syncfs on a filesystem not known to honour it (with a Warning). It reads
// the filesystem type with statfs(2).
func ChooseFlush(dir, mode string, force bool) (FlushInfo, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return FlushInfo{}, fmt.Errorf("queue: statfs %s: %w", dir, err)
	}
	return chooseFlush(int64(st.Type), mode, force)
}

func chooseFlush(fsType int64, mode string, force bool) (FlushInfo, error) {
	fi := FlushInfo{FSType: fsType, FS: fsName(fsType)}
	good := syncfsHonoured[fsType]
	if fsType == magicTmpfs {
		fi.Warning = "the spool is on tmpfs: queued mail does not survive a reboot"
	}
	switch mode {
	case "", FlushAuto:
		if good {
			fi.Mode = FlushSyncfs
			fi.Reason = fmt.Sprintf("queue.flush = auto: %s writes back every file's data on syncfs(2), one syncfs per batch", fi.FS)
		} else {
			fi.Mode = FlushFdatasync
			fi.Reason = fmt.Sprintf("queue.flush = auto: syncfs(2) is not known to make file data durable on %s, so every file is fdatasync'ed (batched by the committer)", fi.FS)
		}
	case FlushFdatasync:
		fi.Mode = FlushFdatasync
		fi.Reason = "queue.flush = fdatasync: every file is fdatasync'ed (batched by the committer)"
	case FlushSyncfs:
		fi.Mode = FlushSyncfs
		fi.Reason = "queue.flush = syncfs: one syncfs(2) per batch"
		if !good {
			if !force {
				return fi, fmt.Errorf("%w: queue.flush = \"syncfs\" on %s, which is not known to make file data durable on syncfs(2) (a FUSE server never sees it): acknowledged mail could be lost; use \"auto\" or \"fdatasync\", or set queue.flush_force = true if you know this filesystem honours syncfs (virtiofs does)", ErrFlushRefused, fi.FS)
			}
			fi.Reason += fmt.Sprintf(", forced (queue.flush_force) on %s", fi.FS)
			fi.Warning = fmt.Sprintf("syncfs forced on %s, which is not known to honour it: a power loss may lose acknowledged mail", fi.FS)
		}
	default:
		return fi, fmt.Errorf("queue: unknown flush mode %q (auto, syncfs or fdatasync)", mode)
	}
	return fi, nil
}

// FlushMode returns the flush mode in use and why.
func (q *Queue) FlushMode() FlushInfo {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	return q.flushInfo
}

// RecheckFlush reads the spool's filesystem type again (the daemon calls
// it on reload: the path may now lead to another filesystem) and switches
// the flush mode if the choice changed. On error (syncfs refused) the
// queue falls back to fdatasync, which is durable everywhere, and returns
// the error for the log.
func (q *Queue) RecheckFlush() (FlushInfo, error) {
	fi, err := ChooseFlush(q.dir, q.cfg.Flush, q.cfg.FlushForce)
	if err != nil {
		fi.Mode = FlushFdatasync
		fi.Reason = "fell back to fdatasync: " + err.Error()
	}
	q.flushMu.Lock()
	old := q.flushInfo
	q.flushInfo = fi
	q.setFlusher(fi.Mode)
	q.flushMu.Unlock()
	if old.Mode != fi.Mode || old.FSType != fi.FSType {
		q.logFlush(fi)
	}
	return fi, err
}

func (q *Queue) logFlush(fi FlushInfo) {
	q.log.Info("queue: flush mode", "mode", fi.Mode, "fs", fi.FS, "dir", q.dir, "why", fi.Reason)
	if fi.Warning != "" {
		q.log.Warn("queue: "+fi.Warning, "mode", fi.Mode, "fs", fi.FS, "dir", q.dir)
	}
}

// flusher is the flush mode (Config.Flush, ChooseFlush) as the committer
// uses it: the one operation that differs between the modes. Everything
// else on the commit and removal paths (the renames, the fsyncs of msg/
// and meta/, the tombstones) is the same in both. Open and RecheckFlush
// choose it (setFlusher); nothing else looks at the mode.
type flusher interface {
	// mode is FlushSyncfs or FlushFdatasync.
	mode() string
	// flush makes the data of the batch's written files durable, before
	// the committer renames them into place. It fails (fail) the requests
	// whose data may not be on disk and returns the others; all reports
	// that it also made every earlier change to the filesystem durable,
	// directory entries included (syncfs writes back all of it).
	flush(batch []*commitReq, fail func(error, []*commitReq)) (kept []*commitReq, all bool)
}

type flusherBox struct{ f flusher }

// setFlusher switches the committer to mode (FlushSyncfs or, for anything
// else, FlushFdatasync, which is durable everywhere); the next batch uses
// it.
func (q *Queue) setFlusher(mode string) {
	var f flusher = fdatasyncFlusher{}
	if mode == FlushSyncfs {
		f = syncfsFlusher{q}
	}
	q.flush.Store(&flusherBox{f})
}

// flusher returns the flush mode in use.
func (q *Queue) flusher() flusher { return q.flush.Load().f }

// syncfsFlusher flushes a batch with one syncfs(2) of the spool's
// filesystem: every new message file and tmp meta with their tmp/ entries,
// and every earlier rename. Only for filesystems known to honour it
// (syncfsHonoured).
type syncfsFlusher struct{ q *Queue }

func (syncfsFlusher) mode() string { return FlushSyncfs }

func (s syncfsFlusher) flush(batch []*commitReq, fail func(error, []*commitReq)) ([]*commitReq, bool) {
	q := s.q
	if err := q.syncfs(int(q.rootFD.Fd())); err != nil {
		q.syncErrs.Add(1)
		fail(noSpace(fmt.Errorf("queue: syncfs %s: %w", q.dir, err)), batch)
		return nil, false
	}
	// A writeback error is reported once: if an earlier batch's syncfs
	// failed after one of these files was written, that error may have
	// been this file's pages. Fail it (451) rather than answer 250 for
	// data that may not be on disk.
	cur := q.syncErrs.Load()
	kept := batch[:0:0]
	for _, r := range batch {
		if r.errs != cur {
			fail(fmt.Errorf("queue: %s: a flush failed while it was being written, its data may not be on disk", r.id), []*commitReq{r})
			continue
		}
		kept = append(kept, r)
	}
	return kept, true
}

// fdatasyncFlusher flushes a batch with an fdatasync(2) of each file: the
// mode wherever syncfs does not reach the data (FUSE, NFS, overlay, see
// syncfsHonoured).
type fdatasyncFlusher struct{}

func (fdatasyncFlusher) mode() string { return FlushFdatasync }

// maxSyncers bounds the fdatasync(2) calls a batch runs at once: the
// device (or the FUSE or NFS server) gets many requests in flight, one
// flush round for the batch, without a thread per file.
const maxSyncers = 16

// flush makes the data of every file of the batch durable with
// fdatasync(2), running up to maxSyncers at once. A request whose file
// cannot be flushed fails alone; the rest of the batch is returned.
// fdatasync also writes the size, so a truncated spare file is safe. It
// makes no directory entry durable: the committer's fsyncs of msg/ and
// meta/ do.
func (fdatasyncFlusher) flush(batch []*commitReq, fail func(error, []*commitReq)) ([]*commitReq, bool) {
	errs := make([]error, len(batch))
	sync1 := func(i int) {
		r := batch[i]
		if r.f == nil {
			errs[i] = fmt.Errorf("queue: %s: no descriptor to fdatasync", r.id)
			return
		}
		for {
			err := unix.Fdatasync(int(r.f.Fd()))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				errs[i] = noSpace(fmt.Errorf("queue: fdatasync %s: %w", r.tmp, err))
			}
			return
		}
	}
	if len(batch) == 1 {
		sync1(0)
	} else {
		var wg sync.WaitGroup
		next := make(chan int)
		for range min(len(batch), maxSyncers) {
			wg.Go(func() {
				for i := range next {
					sync1(i)
				}
			})
		}
		for i := range batch {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	kept := batch[:0:0]
	for i, r := range batch {
		if errs[i] != nil {
			fail(errs[i], []*commitReq{r})
			continue
		}
		kept = append(kept, r)
	}
	return kept, false
}
