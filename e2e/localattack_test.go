package e2e

// Attacks by a local unprivileged user (issue 19): the test runs the
// attacker as nobody (setpriv), against a daemon running as root, as in
// the Debian package before it drops to the relayd user.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needRootForLocalAttack skips outside CI when the test cannot switch to
// an ordinary user; in CI (root, CI=true) it never skips.
func needRootForLocalAttack(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test needs root to run the attacker as nobody")
		}
		t.Skip("needs root to run the attacker as an ordinary user (nobody)")
	}
	return smNeedTool(t, "setpriv")
}

// openToNobody makes the path from dir up to the temp root traversable by
// nobody (t.TempDir's directories are 0700).
func openToNobody(dir string) {
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o711)
	}
}

// asNobodyCmd returns a command that runs as nobody:nogroup.
func asNobodyCmd(ctx context.Context, setpriv string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...)
}

// swapAttacker is run by /usr/bin/python3 as nobody. It stages a maildrop
// file (read from stdin) under a dot name, watches it with inotify, renames
// it into place and, the moment the pickup reads it, renames a FIFO or a
// symlink over it. A pickup that reopens the file by path then blocks on
// the FIFO, or reads the symlink's target.
const swapAttacker = `
import ctypes, os, sys
drop, name, kind, target = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
data = sys.stdin.buffer.read()
tmp = os.path.join(drop, '.stage-' + name)
with open(tmp, 'wb') as f:
    f.write(data)
os.chmod(tmp, 0o644)
ifd = libc.inotify_init()
if ifd < 0 or libc.inotify_add_watch(ifd, tmp.encode(), 0x1) < 0:  # IN_ACCESS
    sys.exit('inotify: errno %d' % ctypes.get_errno())
evil = os.path.join(drop, '.evil-' + name)
if kind == 'fifo':
    os.mkfifo(evil, 0o644)
else:
    os.symlink(target, evil)
os.rename(tmp, os.path.join(drop, name))
os.read(ifd, 4096)  # the pickup read the file (after its fstat)
os.rename(evil, os.path.join(drop, name))
print('swapped', flush=True)
`

// TestMaildropSwapAfterOpen: a local user's maildrop file that the pickup
// refuses (a bare CR at the end of a large body: 550 5.6.0) is replaced,
// while the pickup reads it, by a FIFO or by a symlink to a root-only file.
// The failure notice must carry the original (from the descriptor already
// open), never the symlink's target, and the pickup must not block: a good
// entry dropped afterwards is still delivered.
func TestMaildropSwapAfterOpen(t *testing.T) {
	setpriv := needRootForLocalAttack(t)
	for _, kind := range []string{"fifo", "symlink"} {
		t.Run(kind, func(t *testing.T) {
			e := newSMEnv(t, "", false)
			openToNobody(e.dir)
			// A root-only file that looks like a maildrop entry (say,
			// another user's entry quarantined in corrupt/).
			secretDir := filepath.Join(e.dir, "rootonly")
			os.Mkdir(secretDir, 0o700)
			secret := filepath.Join(secretDir, "secret")
			os.WriteFile(secret, []byte("RELAYD-MAILDROP 1\n"+`{"from":"root","rcpts":["root"],"uid":0}`+
				"\nSubject: marker-root-secret\r\n\r\nmarker-root-secret body\r\n"), 0o600)
			e.r = start(t, e.dir, e.config)
			drop := filepath.Join(e.spool, "maildrop")

			var body strings.Builder
			body.WriteString(`RELAYD-MAILDROP 1` + "\n" + `{"from":"mallory@example.org","rcpts":["x@example.org"],"ret":"FULL","uid":65534}` + "\n")
			body.WriteString("Subject: marker-mallory-original\r\n\r\n")
			line := strings.Repeat("y", 76) + "\r\n"
			for body.Len() < 8<<20 {
				body.WriteString(line)
			}
			body.WriteString("bare\rCR at the very end\r\n")

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			name := fmt.Sprintf("%016x%032x", time.Now().UnixNano(), 1)
			cmd := asNobodyCmd(ctx, setpriv, "/usr/bin/python3", "-c", swapAttacker, drop, name, kind, secret)
			cmd.Stdin = strings.NewReader(body.String())
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "swapped") {
				t.Fatalf("attacker: %v\n%s%s", err, out.String(), errb.String())
			}
			fifo := filepath.Join(drop, name)
			t.Cleanup(func() {
				// Unblock a pickup stuck on the FIFO so the daemon can stop.
				if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					syscall.Close(fd)
				}
				for _, p := range []string{filepath.Join(e.spool, "corrupt", "maildrop-"+name)} {
					if fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						syscall.Close(fd)
					}
				}
			})

			// Another user's entry, dropped after the attack.
			good := "RELAYD-MAILDROP 1\n" + `{"from":"cron","rcpts":["root"],"uid":0}` + "\nSubject: after\r\n\r\nmarker-after-attack\r\n"
			if err := os.WriteFile(filepath.Join(drop, fmt.Sprintf("%016x%032x", time.Now().UnixNano(), 2)), []byte(good), 0o644); err != nil {
				t.Fatal(err)
			}
			smWait(t, e.sh, "marker-after-attack", 20*time.Second)

			// The failure notice to mallory carries her own message.
			deadline := time.Now().Add(20 * time.Second)
			for {
				var notice []byte
				for _, m := range e.sh.Messages() {
					if m.From == "" && len(m.To) == 1 && m.To[0] == "mallory@example.org" {
						notice = m.Data
					}
				}
				if bytes.Contains(notice, []byte("marker-root-secret")) {
					t.Fatalf("the failure notice carries the root-only file:\n%.2000s", notice)
				}
				if notice != nil {
					if !bytes.Contains(notice, []byte("marker-mallory-original")) {
						t.Errorf("the failure notice does not carry the original:\n%.2000s", notice)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no failure notice for mallory\n%s", e.r.logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// socketHog is run by /usr/bin/python3 as nobody: it holds as many
// connections to the submission socket as it can (up to argv[2]), keeps
// them alive with NOOPs, prints "ready", and stops when stdin closes.
const socketHog = `
import socket, sys, select, time
path, want = sys.argv[1], int(sys.argv[2])
conns = []
for _ in range(want):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        continue
    s.setblocking(False)
    conns.append(s)
print('ready %d' % len(conns), flush=True)
while True:
    r, _, _ = select.select([sys.stdin], [], [], 1.0)
    if r and not sys.stdin.readline():
        break
    for s in conns:
        try:
            s.recv(65536)
            s.send(b'NOOP\r\n')
        except OSError:
            pass
`

// TestSubmitSocketExhaustion: nobody holds 200 connections to
// public/submit.sock (max_connections = 100). Another user's sendmail must
// still get through, and nobody's own submission must not be lost either
// (the shim falls back to the maildrop on the daemon's 421).
func TestSubmitSocketExhaustion(t *testing.T) {
	setpriv := needRootForLocalAttack(t)
	e := newSMEnv(t, "max_connections = 100", false)
	openToNobody(e.dir)
	exe := filepath.Join(e.bin, "relayd")
	smCopyFile(t, binary, exe)
	os.Remove(e.sendmail)
	if err := os.Symlink(exe, e.sendmail); err != nil {
		t.Fatal(err)
	}
	e.r = start(t, e.dir, e.config)
	sock := filepath.Join(e.spool, "public", "submit.sock")
	for i := 0; i < 200; i++ {
		if fi, err := os.Lstat(sock); err == nil && fi.Mode().Perm() == 0o666 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hog := asNobodyCmd(ctx, setpriv, "/usr/bin/python3", "-c", socketHog, sock, "200")
	stdin, _ := hog.StdinPipe()
	stdout, _ := hog.StdoutPipe()
	hog.Stderr = os.Stderr
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); hog.Wait() }()
	line := make([]byte, 64)
	n, _ := stdout.Read(line)
	if !strings.HasPrefix(string(line[:n]), "ready") {
		t.Fatalf("hog: %q", line[:n])
	}
	t.Logf("nobody holds: %s", strings.TrimSpace(string(line[:n])))
	time.Sleep(500 * time.Millisecond) // the daemon has accepted (or refused) them all

	if res := e.shim(t, "Subject: root\n\nmarker-root-while-flooded\n", "-i", "root"); res.code != 0 {
		t.Fatalf("root's sendmail while nobody floods the socket: exit %d: %s", res.code, res.stderr)
	}
	res := e.run(t, "Subject: nobody\n\nmarker-nobody-while-flooding\n", nil, setpriv,
		"--reuid=65534", "--regid=65534", "--clear-groups", e.sendmail, "-i", "root")
	if res.code != 0 {
		t.Fatalf("nobody's own sendmail while flooding: exit %d: %s", res.code, res.stderr)
	}
	smWait(t, e.sh, "marker-root-while-flooded", 20*time.Second)
	smWait(t, e.sh, "marker-nobody-while-flooding", 30*time.Second)
}
