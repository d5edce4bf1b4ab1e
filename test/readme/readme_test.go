// Package readme tests that the first two commands of README.md work as
// printed, on a clean checkout (issue 17).
//
// The commands are read from README.md, never copied into the test: the
// first two lines of its first ```sh block.
//
//   - The first (build, then `sudo ./relayd serve` on the built-in defaults)
//     runs literally, through sh -c, in a clean checkout: the tracked files
//     of this tree as they are now (git stash create + git archive), so
//     what is uncommitted but tracked is tested, and nothing untracked
//     helps. It runs inside a network and mount namespace of its own
//     (unshare, root only): port 25 there is always free, and tmpfs over
//     /var/lib and /var/spool keeps the host's spool (a packaged relayd's
//     /var/lib/relayd) out of reach, so the test never disturbs a service
//     of the host. The test waits for the 220 banner on 127.0.0.1:25 and
//     [::1]:25, sends one message, checks that the README's next command,
//     `sudo ./relayd queue list`, shows it waiting for a smarthost, then
//     stops the daemon with SIGTERM and expects a graceful stop.
//   - The second (the test suite) would run this test again inside itself
//     and double the suite's time, so by default the test checks that it
//     is exactly the command .ci/run runs (which adds only -json, an output
//     format). RELAYD_README_FULL=1 runs it literally in the checkout too.
package readme

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// innerEnv marks the suite run by RELAYD_README_FULL=1, so that it does
// not start another one.
const innerEnv = "RELAYD_README_INNER"

func topDir(t *testing.T) string {
	t.Helper()
	top, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// readmeCommands returns the first two command lines of README.md's first
// ```sh block, as printed (with their trailing comments: sh ignores them).
func readmeCommands(t *testing.T, top string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(top, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(cmds) < 2 {
		l := sc.Text()
		switch {
		case !in && strings.TrimSpace(l) == "```sh":
			in = true
		case in && strings.HasPrefix(l, "```"):
			t.Fatalf("README.md's first sh block has fewer than two commands: %q", cmds)
		case in && strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#"):
			cmds = append(cmds, l)
		}
	}
	if len(cmds) < 2 {
		t.Fatalf("README.md has no sh block with two commands")
	}
	return cmds
}

// bare is a command line without its trailing "# comment".
func bare(cmd string) string {
	if i := strings.Index(cmd, " #"); i >= 0 {
		cmd = cmd[:i]
	}
	return strings.TrimSpace(cmd)
}

func TestReadmeCommandsAsPrinted(t *testing.T) {
	top := topDir(t)
	cmds := readmeCommands(t, top)
	t.Logf("README.md's first commands:\n  %s\n  %s", cmds[0], cmds[1])
	// What the README promises around them.
	if !strings.Contains(bare(cmds[0]), "./relayd serve") {
		t.Errorf("first command %q does not run ./relayd serve", cmds[0])
	}
	if got, want := bare(cmds[1]), "go test -race -count=1 ./..."; got != want {
		t.Errorf("second command is %q, want %q (the command .ci/run runs)", got, want)
	}
}

// TestReadmeTestCommandIsCI checks that .ci/run runs the README's test
// command, so a CI run is the literal run of it.
func TestReadmeTestCommandIsCI(t *testing.T) {
	top := topDir(t)
	cmd := bare(readmeCommands(t, top)[1])
	run, err := os.ReadFile(filepath.Join(top, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(string(run), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasPrefix(strings.Replace(strings.TrimSpace(l), " -json", "", 1), cmd+" ") {
			found = true
		}
	}
	if !found {
		t.Errorf(".ci/run does not run the README's test command %q", cmd)
	}
}

// cleanCheckout writes the tracked files of top, with their current
// contents, into a new directory.
func cleanCheckout(t *testing.T, top string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed: cannot make a clean checkout")
	}
	if err := exec.Command("git", "-C", top, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skipf("%s is not a git checkout", top)
	}
	rev := "HEAD"
	out, err := exec.Command("git", "-C", top, "stash", "create").Output()
	if err != nil {
		t.Fatalf("git stash create: %v", err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		rev = s
	}
	dir := t.TempDir()
	sh := fmt.Sprintf("git -C %q archive --format=tar %s | tar -x -C %q", top, rev, dir)
	if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", sh, err, out)
	}
	return dir
}

// serveScript runs as root in a private network and mount namespace:
// $1 the checkout, $2 the README's first command, $3 the log file.
const serveScript = `set -u
cd "$1"
ip link set lo up || exit 1
mount -t tmpfs -o mode=0755 tmpfs /var/lib || exit 1
mount -t tmpfs -o mode=0755 tmpfs /var/spool || exit 1
setsid sh -c "$2" >"$3" 2>&1 </dev/null &
pid=$!
# stop: SIGTERM to sudo (the child of the command line's sh), which passes
# it on to relayd; sh then exits with relayd's status.
stop() {
	kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null)
	if [ -n "$kids" ]; then kill -TERM $kids; else kill -TERM -- "-$pid"; fi
	wait "$pid"
	echo "SERVE_EXIT $?"
}
# rd: one SMTP reply (the lines up to "NNN text") from fd 3.
rd() {
	while IFS= read -r -t 30 l <&3; do
		echo "S: $l"
		case $l in [0-9][0-9][0-9]" "*|[0-9][0-9][0-9]) return 0 ;; esac
	done
	return 1
}
n=0
until bash -c 'exec 3<>/dev/tcp/127.0.0.1/25' 2>/dev/null; do
	if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; echo "SERVE_EXIT $? before listening"; exit 1; fi
	n=$((n + 1))
	if [ "$n" -gt 3000 ]; then echo "NOT_LISTENING after 600s"; stop; exit 1; fi
	sleep 0.2
done
for a in 127.0.0.1 ::1; do
	exec 3<>"/dev/tcp/$a/25" || { echo "NO_CONNECT $a"; stop; exit 1; }
	rd && echo "BANNER_OK $a"
	exec 3>&-
done
exec 3<>/dev/tcp/127.0.0.1/25
rd
for c in "EHLO readme.test" "MAIL FROM:<app@example.com>" "RCPT TO:<bob@example.org>" "DATA"; do
	printf '%s\r\n' "$c" >&3
	rd
done
printf 'Subject: readme test\r\n\r\nhello\r\n.\r\n' >&3
rd
printf 'QUIT\r\n' >&3
rd
exec 3>&-
echo "QUEUE_LIST_BEGIN"
sudo ./relayd queue list
echo "QUEUE_LIST_EXIT $?"
stop
`

func TestReadmeServeAsPrinted(t *testing.T) {
	if os.Getenv(innerEnv) != "" {
		t.Skip("inside the README's test command run by this test")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the README's serve command runs in a private network and mount namespace (unshare)")
	}
	for _, tool := range []string{"unshare", "ip", "bash", "sudo", "setsid", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed and CI=true (.ci/install-deps installs it)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	top := topDir(t)
	cmd := readmeCommands(t, top)[0]
	dir := cleanCheckout(t, top)
	// The namespace has no network: fetch modules first (a no-op when the
	// module cache has them).
	if out, err := exec.Command("sh", "-c", "cd "+dir+" && go mod download").CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	logFile := filepath.Join(t.TempDir(), "serve.log")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "unshare", "--net", "--mount", "--propagation", "private",
		"bash", "-c", serveScript, "readme", dir, cmd, logFile)
	out, err := c.CombinedOutput()
	serveLog, _ := os.ReadFile(logFile)
	t.Logf("script:\n%s\nserve output:\n%s", out, serveLog)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("unshare: %v", err)
	}
	for _, want := range []string{"BANNER_OK 127.0.0.1", "BANNER_OK ::1", "QUEUE_LIST_EXIT 0", "SERVE_EXIT 0"} {
		if !bytes.Contains(out, []byte(want+"\n")) {
			t.Errorf("%q not in the script's output", want)
		}
	}
	// SIGTERM went to sudo, which passed it on: relayd stops gracefully.
	if !bytes.Contains(serveLog, []byte(`msg="relayd stopped"`)) || bytes.Contains(serveLog, []byte("level=ERROR")) {
		t.Errorf("relayd did not stop cleanly on SIGTERM")
	}
	if !regexp.MustCompile(`S: 250 2\.0\.0 .*queued as`).Match(out) {
		t.Errorf("the message was not queued")
	}
	// The README says held mail shows as waiting for a smarthost.
	_, list, _ := bytes.Cut(out, []byte("QUEUE_LIST_BEGIN"))
	if !bytes.Contains(list, []byte("bob@example.org")) || !bytes.Contains(list, []byte("waiting")) {
		t.Errorf("queue list does not show bob@example.org waiting")
	}
}

// TestReadmeTestCommandFull runs the README's test command literally in a
// clean checkout. It doubles the suite's time, so only when asked.
func TestReadmeTestCommandFull(t *testing.T) {
	if os.Getenv(innerEnv) != "" {
		t.Skip("inside the README's test command run by this test")
	}
	if os.Getenv("RELAYD_README_FULL") != "1" {
		t.Skip("RELAYD_README_FULL=1 not set (runs the whole suite again; .ci/run runs this command)")
	}
	top := topDir(t)
	cmd := readmeCommands(t, top)[1]
	dir := cleanCheckout(t, top)
	c := exec.Command("sh", "-c", cmd)
	c.Dir = dir
	c.Env = append(os.Environ(), innerEnv+"=1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}
