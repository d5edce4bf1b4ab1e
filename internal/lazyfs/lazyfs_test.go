package lazyfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The harness itself: fsync'ed data survives a Crash, data flushed only
// by syncfs(2) does not (its file is there, empty), and a rename is
// durable at once.
func TestCrashKeepsOnlySyncedData(t *testing.T) {
	l := MountForTest(t)
	var st unix.Statfs_t
	if err := unix.Statfs(l.Dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != 0x65735546 {
		t.Fatalf("f_type = %#x, want FUSE", st.Type)
	}
	if err := os.Mkdir(filepath.Join(l.Dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, sync bool) {
		f, err := os.Create(filepath.Join(l.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				t.Fatal(err)
			}
		} else if err := unix.Syncfs(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	a := bytes.Repeat([]byte("synced "), 1000)
	write("d/a", a, true)
	write("d/b", []byte("only syncfs"), false)
	if err := os.Rename(filepath.Join(l.Dir, "d/b"), filepath.Join(l.Dir, "b")); err != nil {
		t.Fatal(err)
	}
	// More data after the sync is lost too, and the size goes back.
	f, err := os.OpenFile(filepath.Join(l.Dir, "d/a"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tail"))
	f.Close()
	if n := l.Crash(); n != 2 {
		t.Errorf("Crash: %d files lost data, want 2", n)
	}
	if got, err := os.ReadFile(filepath.Join(l.Dir, "d/a")); err != nil || !bytes.Equal(got, a) {
		t.Errorf("fsync'ed file after Crash: %d bytes, %v; want %d", len(got), err, len(a))
	}
	if got, err := os.ReadFile(filepath.Join(l.Dir, "b")); err != nil || len(got) != 0 {
		t.Errorf("syncfs'ed and renamed file after Crash: %q, %v; want it empty", got, err)
	}
	// RENAME_NOREPLACE is honoured.
	err = unix.Renameat2(unix.AT_FDCWD, filepath.Join(l.Dir, "b"), unix.AT_FDCWD, filepath.Join(l.Dir, "d/a"), unix.RENAME_NOREPLACE)
	if err != unix.EEXIST {
		t.Errorf("renameat2 NOREPLACE over a file: %v, want EEXIST", err)
	}
}
