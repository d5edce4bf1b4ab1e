// Package lazyfs is a FUSE filesystem for power-loss tests, in the manner
// of LazyFS (github.com/dsrhaslab/lazyfs): it keeps every file's data in
// memory and makes it "durable" only when the file is fsync'ed or
// fdatasync'ed; Crash drops everything written since, as a power loss
// drops a disk's volatile cache. Namespace operations (create, rename,
// unlink, mkdir) are durable at once, as LazyFS passes them through to
// its backing filesystem: after a Crash a file created and renamed but
// never synced is there, with 0 bytes (or its last synced content).
//
// Like any ordinary FUSE server it never sees syncfs(2): the kernel
// forwards FUSE_SYNCFS only to virtiofs, and with direct I/O (used for
// every file, so the kernel keeps no page cache of its own) syncfs has
// nothing to write back. A program that relies on syncfs for durability
// loses data here, as it does on gocryptfs, mergerfs or sshfs.
//
// It is test-only: everything lives in memory, there is no permission
// checking, and only what relayd's spool uses is implemented (regular
// files and directories, rename with RENAME_NOREPLACE).
package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is a mounted lazy filesystem.
type FS struct {
	Dir    string // the mount point
	server *fuse.Server
	root   *dirNode

	mu     sync.Mutex // held by Crash while it rewinds files
	fsyncs uint64     // fsync/fdatasync calls on files
}

// Available says why a FUSE mount cannot be made here (nil: it can):
// it needs root (DirectMount, no fusermount needed) and /dev/fuse.
func Available() error {
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return errors.New("not root and no fusermount")
			}
		}
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cannot open /dev/fuse: %w", err)
	}
	f.Close()
	return nil
}

// Mount mounts an empty lazy filesystem on dir (which must exist). Unmount
// it with Unmount.
func Mount(dir string) (*FS, error) {
	l := &FS{Dir: dir}
	l.root = &dirNode{lfs: l, mode: 0o755}
	zero := time.Duration(0)
	opts := &fs.Options{
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName: "lazyfs", Name: "lazyfs",
			// mount(2) directly when root, so fusermount is not needed.
			DirectMount: os.Geteuid() == 0,
			// The spool's test mounts are used by root only.
			AllowOther: false,
		},
	}
	srv, err := fs.Mount(dir, l.root, opts)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mount %s: %w", dir, err)
	}
	l.server = srv
	CloseOnExec()
	return l, nil
}

// CloseOnExec marks every /dev/fuse descriptor of the process close-on-exec.
// go-fuse's direct mount leaves it inheritable: a child process (the
// daemon under test) would hold the connection open, and when it is
// killed while closing a file on the mount, its exit waits for an answer
// on the connection only its own descriptor keeps alive (a process stuck
// in D state, a mount that cannot be unmounted).
func CloseOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && t == "/dev/fuse" {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

// Unmount unmounts the filesystem, lazily (MNT_DETACH) if it is busy.
func (l *FS) Unmount() error {
	err := l.server.Unmount()
	if err != nil {
		// A process killed with files open may keep the mount busy a
		// moment; detach it so a test never leaves a mount behind.
		if derr := syscall.Unmount(l.Dir, syscall.MNT_DETACH); derr == nil {
			err = nil
		}
	}
	return err
}

// Fsyncs reports how many fsync/fdatasync calls on files it has served.
func (l *FS) Fsyncs() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fsyncs
}

// Crash drops every write not made durable by an fsync or fdatasync of
// its file: each file's content goes back to what it was at its last
// sync (empty if it never had one). Call it while nothing uses the
// filesystem (after the process under test was killed). It returns the
// number of files that lost data.
func (l *FS) Crash() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	var walk func(in *fs.Inode)
	walk = func(in *fs.Inode) {
		for _, c := range in.Children() {
			switch op := c.Operations().(type) {
			case *fileNode:
				if op.rewind() {
					n++
				}
			case *dirNode:
				walk(c)
			}
		}
	}
	walk(&l.root.Inode)
	return n
}

type dirNode struct {
	fs.Inode
	lfs *FS

	mu   sync.Mutex
	mode uint32
}

var (
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeSetattrer = (*dirNode)(nil)
	_ fs.NodeFsyncer   = (*dirNode)(nil)
	_ fs.NodeStatfser  = (*dirNode)(nil)
)

func (d *dirNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	out.Mode = syscall.S_IFDIR | d.mode
	out.Nlink = 2
	return 0
}

func (d *dirNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	if m, ok := in.GetMode(); ok {
		d.mode = m & 0o7777
	}
	d.mu.Unlock()
	return d.Getattr(ctx, f, out)
}

// Fsync of a directory: namespace operations are durable already.
func (d *dirNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno { return 0 }

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bs = 4096
	out.Bsize, out.Frsize = bs, bs
	out.Blocks, out.Bfree, out.Bavail = 1<<20, 1<<20, 1<<20 // 4 GiB, always free
	out.Files, out.Ffree = 1<<20, 1<<20
	out.NameLen = 255
	return 0
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	nd := &dirNode{lfs: d.lfs, mode: mode & 0o7777}
	out.Mode = syscall.S_IFDIR | nd.mode
	return d.NewPersistentInode(ctx, nd, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if d.GetChild(name) != nil {
		return nil, nil, 0, syscall.EEXIST
	}
	fn := &fileNode{lfs: d.lfs, mode: mode & 0o7777, mtime: time.Now()}
	out.Mode = syscall.S_IFREG | fn.mode
	return d.NewPersistentInode(ctx, fn, fs.StableAttr{Mode: syscall.S_IFREG}), nil, fuse.FOPEN_DIRECT_IO, 0
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	c := d.GetChild(name)
	if c == nil {
		return syscall.ENOENT
	}
	if c.IsDir() {
		return syscall.EISDIR
	}
	return 0 // the bridge removes the child
}

func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	c := d.GetChild(name)
	if c == nil {
		return syscall.ENOENT
	}
	if !c.IsDir() {
		return syscall.ENOTDIR
	}
	if len(c.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

func (d *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	const renameNoReplace = 0x1
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT: not needed
	}
	src := d.GetChild(name)
	if src == nil {
		return syscall.ENOENT
	}
	dst := newParent.EmbeddedInode().GetChild(newName)
	if dst != nil {
		if flags&renameNoReplace != 0 {
			return syscall.EEXIST
		}
		if src.IsDir() != dst.IsDir() {
			if dst.IsDir() {
				return syscall.EISDIR
			}
			return syscall.ENOTDIR
		}
		if dst.IsDir() && len(dst.Children()) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	return 0 // the bridge moves the child, replacing dst
}

type fileNode struct {
	fs.Inode
	lfs *FS

	mu     sync.Mutex
	mode   uint32
	mtime  time.Time
	data   []byte // what readers see
	synced []byte // what survives a Crash
}

var (
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeFsyncer   = (*fileNode)(nil)
	_ fs.NodeFlusher   = (*fileNode)(nil)
)

// rewind drops unsynced data; it reports whether any was dropped.
func (f *fileNode) rewind() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	same := len(f.data) == len(f.synced) && string(f.data) == string(f.synced)
	f.data = append([]byte(nil), f.synced...)
	return !same
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		f.mu.Lock()
		f.data = f.data[:0]
		f.mu.Unlock()
	}
	// Direct I/O: no page cache in the kernel, every read and write
	// comes here (and syncfs has nothing to write back).
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	n := copy(dest, f.data[off:])
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *fileNode) Write(ctx context.Context, fh fs.FileHandle, p []byte, off int64) (uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.data)) {
		f.data = grow(f.data, end)
	}
	copy(f.data[off:], p)
	f.mtime = time.Now()
	return uint32(len(p)), 0
}

func grow(b []byte, n int64) []byte {
	if int64(cap(b)) >= n {
		old := len(b)
		b = b[:n]
		clear(b[old:])
		return b
	}
	nb := make([]byte, n, n+n/4)
	copy(nb, b)
	return nb
}

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	out.Mode = syscall.S_IFREG | f.mode
	out.Size = uint64(len(f.data))
	out.Blocks = (out.Size + 511) / 512
	out.Nlink = 1
	out.SetTimes(nil, &f.mtime, &f.mtime)
	return 0
}

func (f *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	if sz, ok := in.GetSize(); ok {
		if sz <= uint64(len(f.data)) {
			f.data = f.data[:sz]
		} else {
			f.data = grow(f.data, int64(sz))
		}
	}
	if m, ok := in.GetMode(); ok {
		f.mode = m & 0o7777
	}
	f.mu.Unlock()
	return f.Getattr(ctx, fh, out)
}

// Fsync (fsync and fdatasync alike) makes the file's data durable.
func (f *fileNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	f.lfs.mu.Lock()
	f.lfs.fsyncs++
	f.lfs.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced = append(f.synced[:0], f.data...)
	return 0
}

func (f *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }
