// Package queue is relayd's durable spool and delivery scheduler: the part
// of the relay whose job is to never lose mail.
//
// # On-disk layout
//
// Everything lives under Config.Dir (the state_dir):
//
//	Dir/            0711  traversable, so local users can reach public/
//	  lock          0600  flock(2) held by the daemon that owns the spool
//	  tmp/          0700  messages being received (tmp/ID) and meta updates
//	                      being written; never acknowledged, deleted at Open
//	  msg/ID        0700  one file per committed message, immutable: the body
//	                      after cleanup, then the Meta as committed (JSON),
//	                      then a 32-byte trailer giving the JSON's length and
//	                      CRC-32 (trailer.go). The body starts at byte 0.
//	  meta/ID.json  0700  the current Meta once it changed after the commit
//	                      (attempts, recipient state, hold); it overrides the
//	                      trailer; replaced atomically
//	  meta/ID.gone  0700  tombstone of a message being removed
//	  spare/        0700  files of finished messages, overwritten by new
//	                      ones instead of creating files (spare.go); no
//	                      mail, emptied at Close and Open
//	  corrupt/      0700  quarantine: unreadable messages, meta without its
//	                      body; never deleted by relayd
//	  maildrop/     1733  the sendmail command drops files here while the
//	                      daemon is down (anyone may write, only root may list)
//	  public/       0755  the local submission socket
//
// Permissions are set with Chmod after Mkdir, so the umask does not matter.
// A message that is delivered at its first attempt never has more than one
// file, and usually reuses the file of one delivered before it (creating
// files is what costs most on ext4). Spools of the
// earlier two-file layout (bare body in msg/ID, meta in meta/ID.json) are
// read as they are: meta/ID.json takes precedence and the reader stops at
// the body's end, Meta.Size - len(Meta.Prefix).
//
// # Invariants
//
//  1. A file msg/ID exists only if it is complete (body, meta, trailer) and
//     on stable storage: the rename tmp/ID -> msg/ID is the commit marker
//     and happens only after the file was flushed; it never replaces an
//     existing msg/ID (RENAME_NOREPLACE). A meta/ID.json exists only for a
//     committed message. Recovery (Open) quarantines a msg/ID whose meta
//     (meta/ID.json, else the trailer) is unreadable or disagrees with its
//     size, and a meta/ID.json without msg/ID.
//  2. Draft.Commit returns nil only after the message file and its msg/
//     entry are on stable storage. Only then may a caller answer 250. A
//     failed commit leaves no msg/ID behind (the caller answers 451).
//  3. Every later change of a meta (attempts, recipient state, hold) is
//     written to tmp/ and renamed to meta/ID.json only after it was flushed,
//     and the rename is flushed before the change counts (these updates
//     join the committer's batches in both flush modes; after Close it is
//     atomicWrite), so a reader sees either the old or the new meta, never
//     a mix. Readers look for meta/ID.json first, then the trailer.
//  4. The attempt count and the next attempt time are persisted BEFORE the
//     Deliverer is called: a crash mid-delivery cannot make relayd hammer the
//     smarthost with immediate retries, nor lose the schedule. For the first
//     attempt, Commit itself persists the retry time (arrival + first
//     backoff, in the trailer) and the attempt starts from memory; the count
//     of 1 reaches the disk with the outcome. A message whose first attempt
//     a crash interrupted is retried after that backoff. One exception: when
//     the spool is full (ErrNoSpace) the attempt goes ahead with its state
//     in memory (entry.unsaved, persisted first at the next pass once space
//     returns), because no outcome needs space and a success frees it: a
//     full spool drains. A crash meanwhile retries from the older state on
//     disk, at most once more than any crash during a delivery would.
//  5. Removal never leaves a meta without its body, and never brings a
//     message back in its committed state once its state changed. A message
//     without meta/ID.json is removed by renaming msg/ID into spare/, or
//     unlinking it (atomic; a crash may undo it: a duplicate). A spare file
//     becomes a message again only through invariant 1, only after a flush
//     made its removal from msg/ durable, and never while a reader in the
//     process has it open (see spare.go; a descriptor kept from Commit
//     for the first attempt travels with its file and serves no other
//     message). Otherwise the final meta, marked Removed, is written to
//     meta/ID.json and renamed to the
//     tombstone meta/ID.gone (readers then see the message as gone), msg/ID
//     is unlinked once the tombstone is durable, and the tombstone once that
//     unlink is durable (the janitor does both for all removals since its
//     last pass, one fsync of meta/ and one of msg/). Open finishes any
//     tombstoned removal whose tombstone says Removed; a crash before the
//     tombstone is durable undoes the removal (a duplicate, never a loss).
//     Any other meta/ID.gone (stray, damaged, or of a relayd before this
//     rule) is quarantined with msg/ID and meta/ID.json, never obeyed.
//  6. Only one process owns a spool (the lock file); only one goroutine at a
//     time works on a given message (the claim, lifecycle.go), so a
//     message is never delivered twice concurrently and meta updates never
//     race.
//  7. Memory holds only ID, next-attempt time and flags per message (a
//     min-heap plus a map, on the order of 100 bytes per message); the
//     envelope is read from disk when a message becomes due. Recovery and
//     List read msg/ and meta/ in chunks, one meta at a time. There is one
//     scheduler goroutine with one timer, and at most Config.Concurrency
//     delivery goroutines.
//
// # Group commit
//
// fsync is what limits intake throughput. Every Draft writes body, meta
// and trailer into tmp/ID without syncing, then hands itself to the single
// committer goroutine. The committer takes every commit waiting at that
// moment as one batch and, for the whole batch: flushes the data of every
// file in it (see Flush modes), renames each tmp/ID into msg/ (the commit
// markers) and each meta update into meta/, fsyncs msg/ and meta/ once
// each (whichever got entries), and then releases every waiting Commit.
// The delivery side's meta updates (the attempt persisted before each
// retry, the outcome after it) go through the same batches, so a
// delivered message costs no flush of its own, and one delivered at its
// first attempt writes no meta at all. While one batch is being flushed
// the next accumulates, so a flush is shared by every session committing
// concurrently. Removals of messages with a meta/ID.json are completed by
// the janitor in either mode (one fsync of meta/ and one of msg/ per pass).
//
// # Flush modes
//
// Which flush makes a batch's data durable depends on what the spool's
// filesystem guarantees, never on hope (queue.flush; flush.go: the flusher,
// chosen at Open and on reload, the committer's one mode-dependent step):
//
//   - syncfs: one syncfs(2) per batch, which writes back every file's data
//     and metadata on the filesystem. Only where the kernel's
//     sync_filesystem() is known to reach the data: ext4 (also ext2/3),
//     xfs, btrfs; and tmpfs, where nothing is durable anyway (a warning
//     says so). Its cost: it also flushes unrelated dirty data on the same
//     filesystem, so the spool is best kept off a filesystem that holds
//     large, busy files.
//   - fdatasync: the committer fdatasyncs every file of the batch (up to
//     maxSyncers at once: one flush round for many files), then renames and
//     fsyncs the directories. Durable on any filesystem that honours
//     fsync. Chosen everywhere else: FUSE (an ordinary /dev/fuse server
//     never receives syncfs; gocryptfs, mergerfs, sshfs and LazyFS lost
//     acknowledged mail with syncfs), NFS and other network filesystems,
//     overlay (its syncfs does not write back the upper files' data),
//     zfs and anything unknown.
//
// "auto" (the default) chooses by statfs(2) f_type at Open and again at
// every reload (RecheckFlush); the choice and why are logged, and relayd
// check reports it. "syncfs" on a filesystem not in the first list is
// refused (Open fails, ErrFlushRefused) unless Config.FlushForce
// (queue.flush_force) is set, e.g. for virtiofs, which does forward
// syncfs but has FUSE's f_type; then every start logs a warning.
// The power-loss test (powerloss_test.go, on internal/lazyfs) proves
// fdatasync mode loses nothing where syncfs loses mail.
//
// # Scheduling
//
// Backoff after attempt n is min(MaxBackoff, MinBackoff*2^(n-1)) times a
// jitter factor in [0.9, 1.1), computed in floating point. A message expires
// when it would be retried at or after Arrival+MaxAge: its pending recipients
// fail with their last reply. A Deliverer error is a transport failure: all
// recipients stay pending and the transport is marked down; while it is down
// only one probe attempt runs at a time (the earliest due message), and the
// next probe waits a smarthost-wide backoff (30 s doubling per consecutive
// failure, capped at MinBackoff). When an attempt succeeds again, or the
// smarthost settings change (TransportChanged, on reload), the whole
// deferred backlog becomes due at once.
//
// With Routes (SetRoutes, from [[route]]) all of this is per smarthost
// (lanes.go): each has its own heap, down state, probe, backoff, rate limit
// and Concurrency workers, so one smarthost down or slow never holds
// another's mail, and its recovery drains only its own backlog. The intake
// (cleanup) splits a message whose recipients take several smarthosts into
// one entry per smarthost, so an entry normally takes one. A message is
// routed at each attempt (a reload's routes apply to queued mail); an entry
// whose pending recipients take several smarthosts all the same (routes
// changed since it was queued) is delivered to each in the same attempt,
// in parallel, skipping (deferring without trying) those that are backing
// off. Memory per entry grows by its smarthost names (nil for the default
// alone).
//
// # Rate limit
//
// Config.RateLimit (SetRateLimit at runtime) caps hand-offs to the
// Deliverer: max_per_minute paces them (no burst), max_per_hour and
// max_per_day are sliding-window caps. The check happens in dispatch before
// a message is claimed, so a message over the limit stays due in the heap
// with no attempt persisted and no backoff; a claim that ends without a
// Deliver call gives its slot back. One log line says when mail starts
// waiting for the limit.
//
// Notices (RFC 3464 DSNs) are requested from the Notifier: failed (after an
// attempt or expiry), delayed (once per message, at the first pass after
// Arrival+DelayWarning), relayed (NOTIFY=SUCCESS not passed on). Each is
// generated once; the flags that say so are persisted. A message is removed
// only when every recipient is final and every notice is done. The null
// sender is never notified; a failed notice goes to the admin once
// (Origin FromNotice) and a failed admin notice is logged and dropped.
package queue
