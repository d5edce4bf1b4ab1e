package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stored is the content of state_dir/oauth2/NAME.json.
type stored struct {
	RefreshToken string    `json:"refresh_token"`
	ClientID     string    `json:"client_id,omitempty"`
	TokenURL     string    `json:"token_url,omitempty"`
	Updated      time.Time `json:"updated"`
}

// FileName is the store file for the mailbox user: characters other than
// letters, digits and "@._+-" become "_".
func FileName(user string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("@._+-", r):
			return r
		}
		return '_'
	}, user)
	if name == "" || strings.HasPrefix(name, ".") {
		name = "_" + name
	}
	return name + ".json"
}

// loadRefresh reads the refresh token from path.
func loadRefresh(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &Error{Kind: KindNoRefreshToken, Err: err,
			hint: "there is no refresh token yet: run  relayd oauth2 login  (as root or the relayd user) to sign in once"}
	}
	if err != nil {
		return "", &Error{Kind: KindLocal, Err: err, hint: "the refresh token file cannot be read: check its owner (the relayd user) and mode 0600"}
	}
	var st stored
	if err := json.Unmarshal(b, &st); err != nil || st.RefreshToken == "" {
		return "", &Error{Kind: KindNoRefreshToken, Err: fmt.Errorf("%s holds no refresh token", path),
			hint: "run  relayd oauth2 login  again"}
	}
	return st.RefreshToken, nil
}

// saveRefresh writes st to path atomically: a temporary file in the same
// directory (mode 0600) is written and fsynced, renamed over path, and the
// directory is fsynced, so after a crash path holds either the old or the
// new token, complete. The directory is created 0700. When running as root
// (relayd oauth2 login), the file and directory are given to the owner of
// the directory above, the state_dir, which is the daemon's user.
func saveRefresh(path string, st stored) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	uid, gid, chown := owner(filepath.Dir(dir))
	if chown {
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if chown {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockStore takes an exclusive flock(2) on a lock file beside path
// (".NAME.lock"), creating the directory if needed, and returns the unlock.
func lockStore(path string) (func(), error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lp := filepath.Join(dir, "."+strings.TrimSuffix(filepath.Base(path), ".json")+".lock")
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if uid, gid, chown := owner(filepath.Dir(dir)); chown {
		_ = os.Chown(dir, uid, gid)
		_ = f.Chown(uid, gid)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lp, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// owner returns the owner of dir when this process runs as root and dir
// belongs to someone else.
func owner(dir string) (uid, gid int, chown bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
