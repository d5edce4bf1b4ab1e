package lazyfs

import (
	"os"
	"testing"
)

// MountForTest mounts a lazy filesystem on a new temporary directory and
// unmounts it when the test ends, also when it fails. Where FUSE is not
// available the test is skipped with the reason, except under CI=true,
// where the power-loss tests must run: there it fails.
func MountForTest(t testing.TB) *FS {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE is required under CI=true: %v", err)
		}
		t.Skipf("no FUSE here (%v): the power-loss test needs root and /dev/fuse", err)
	}
	dir := t.TempDir()
	l, err := Mount(dir)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Unmount(); err != nil {
			t.Errorf("lazyfs: unmount %s: %v", dir, err)
		}
	})
	return l
}
