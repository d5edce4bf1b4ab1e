package e2e

// End-to-end tests of the sendmail-compatible command (issue 5): the real
// binary runs as the daemon and, through a symlink named "sendmail", as the
// shim, driven by the real clients that call /usr/sbin/sendmail on a Debian
// host (bsd-mailx, PHP's mail(), git send-email, cron's command line).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

const (
	smAdmin  = "admin@example.net"  // rewrite.admin: where local mail goes
	smSender = "server@example.com" // rewrite.sender: local senders become this
)

// smEnv is a daemon plus a "sendmail" symlink to the binary.
type smEnv struct {
	sh       *smtptest.Server
	dir      string
	config   string
	spool    string
	r        *relayd // nil until started
	sendmail string  // path of the symlink
	bin      string  // directory holding the symlink
}

// newSMEnv writes a config with [rewrite] admin and sender; extraListen is
// appended to [listen]. The daemon is started when startDaemon is set.
func newSMEnv(t *testing.T, extraListen string, startDaemon bool) *smEnv {
	t.Helper()
	e := &smEnv{sh: smarthost(t, smtptest.Faults{}), dir: t.TempDir()}
	e.config = writeConfig(t, e.dir, e.sh, "",
		fmt.Sprintf("\n[rewrite]\nadmin = %q\nsender = %q\n", smAdmin, smSender))
	if extraListen != "" {
		b, _ := os.ReadFile(e.config)
		s := strings.Replace(string(b), "[listen]\n", "[listen]\n"+extraListen+"\n", 1)
		if err := os.WriteFile(e.config, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.spool = filepath.Join(e.dir, "spool")
	e.bin = filepath.Join(e.dir, "bin")
	if err := os.Mkdir(e.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	e.sendmail = filepath.Join(e.bin, "sendmail")
	if err := os.Symlink(binary, e.sendmail); err != nil {
		t.Fatal(err)
	}
	if startDaemon {
		e.r = start(t, e.dir, e.config)
	}
	return e
}

// environ is the environment for the shim and the clients: the shim finds
// the config through RELAYD_CONFIG; HOME is private so no user config of
// mailx or git leaks in.
func (e *smEnv) environ(extra ...string) []string {
	home := filepath.Join(e.dir, "home")
	os.MkdirAll(home, 0o755)
	env := []string{"RELAYD_CONFIG=" + e.config, "HOME=" + home, "PATH=" + e.bin + ":" + os.Getenv("PATH"),
		"LANG=C", "GIT_CONFIG_NOSYSTEM=1", "TMPDIR=" + os.TempDir(),
		// The race runtime sleeps a second at exit by default; the shim
		// runs hundreds of times here.
		"GORACE=atexit_sleep_ms=0 halt_on_error=1"}
	return append(env, extra...)
}

// smResult is one finished client process.
type smResult struct {
	stdout, stderr string
	code           int
}

// run runs name with args and stdin in the shim environment, bounded by a
// minute.
func (e *smEnv) run(t *testing.T, stdin string, extraEnv []string, name string, args ...string) smResult {
	t.Helper()
	return e.runIn(t, "", stdin, extraEnv, name, args...)
}

func (e *smEnv) runIn(t *testing.T, dir, stdin string, extraEnv []string, name string, args ...string) smResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = e.environ(extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := smResult{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %q: %v", name, args, err)
		}
		res.code = ee.ExitCode()
	}
	return res
}

// shim runs the sendmail symlink.
func (e *smEnv) shim(t *testing.T, stdin string, args ...string) smResult {
	t.Helper()
	return e.run(t, stdin, nil, e.sendmail, args...)
}

// mustShim runs the shim and fails the test unless it exits 0.
func (e *smEnv) mustShim(t *testing.T, stdin string, args ...string) {
	t.Helper()
	if res := e.shim(t, stdin, args...); res.code != 0 {
		t.Fatalf("sendmail %q: exit %d\nstdout: %s\nstderr: %s", args, res.code, res.stdout, res.stderr)
	}
}

// smNeedTool skips when a client is missing, except in CI, where
// .ci/install-deps installs it and its absence is a failure.
func smNeedTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI installs it with .ci/install-deps)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// smWait waits for a message at the smarthost containing marker.
func smWait(t *testing.T, sh *smtptest.Server, marker string, timeout time.Duration) smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, m := range sh.Messages() {
			if bytes.Contains(m.Data, []byte(marker)) {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var seen []string
	for _, m := range sh.Messages() {
		seen = append(seen, fmt.Sprintf("%s -> %v", m.From, m.To))
	}
	t.Fatalf("no message with %q reached the smarthost within %s (got %d: %v)", marker, timeout, len(seen), seen)
	return smtptest.Message{}
}

// smHeader returns the unfolded values of every header field called name.
func smHeader(data []byte, name string) []string {
	var out []string
	hdr := headerBlock(data)
	lines := strings.Split(strings.TrimSuffix(hdr, "\r\n"), "\r\n")
	for i := 0; i < len(lines); i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			v += lines[i]
		}
		out = append(out, strings.TrimSpace(v))
	}
	return out
}

// smCheckTrace checks the Received field of a locally submitted message.
func smCheckTrace(t *testing.T, m smtptest.Message, uid int) {
	t.Helper()
	want := fmt.Sprintf("by %s (relayd, from local uid %d)", hostname, uid)
	for _, r := range smHeader(m.Data, "Received") {
		if strings.Contains(r, want) {
			return
		}
	}
	t.Errorf("no Received field with %q:\n%s", want, headerBlock(m.Data))
}

// smCheckFrom checks that the header From is rewrite.sender.
func smCheckFrom(t *testing.T, m smtptest.Message, display string) {
	t.Helper()
	from := smHeader(m.Data, "From")
	if len(from) != 1 || !strings.Contains(from[0], "<"+smSender+">") {
		t.Errorf("From = %q, want one From with <%s>:\n%s", from, smSender, headerBlock(m.Data))
		return
	}
	if display != "" && !strings.Contains(from[0], display) {
		t.Errorf("From = %q lost the display name %q", from[0], display)
	}
}

func TestSendmailMailx(t *testing.T) {
	mail := smNeedTool(t, "bsd-mailx")
	e := newSMEnv(t, "", true)
	rc := filepath.Join(e.dir, "mailrc")
	if err := os.WriteFile(rc, []byte("set sendmail="+e.sendmail+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := e.run(t, "mailx body line\n", []string{"MAILRC=" + rc}, mail, "-s", "mailx subject", "root")
	if res.code != 0 {
		t.Fatalf("mail: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	m := smWait(t, e.sh, "mailx body line", 20*time.Second)
	if m.From != smSender || len(m.To) != 1 || m.To[0] != smAdmin {
		t.Errorf("envelope %q -> %v, want %s -> [%s]", m.From, m.To, smSender, smAdmin)
	}
	smCheckFrom(t, m, "")
	if s := smHeader(m.Data, "Subject"); len(s) != 1 || s[0] != "mailx subject" {
		t.Errorf("Subject = %q", s)
	}
	smCheckTrace(t, m, os.Getuid())
	e.r.waitLog(t, `status=sent`, 10*time.Second)
}

func TestSendmailPHP(t *testing.T) {
	php := smNeedTool(t, "php")
	e := newSMEnv(t, "", true)
	res := e.run(t, "", nil, php, "-n", "-d", "sendmail_path="+e.sendmail+" -t -i",
		"-r", `exit(mail("user@example.test", "php subject", "php body marker") ? 0 : 3);`)
	if res.code != 0 {
		t.Fatalf("php mail(): exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	m := smWait(t, e.sh, "php body marker", 20*time.Second)
	if len(m.To) != 1 || m.To[0] != "user@example.test" {
		t.Errorf("recipients %v, want [user@example.test]", m.To)
	}
	if m.From != smSender {
		t.Errorf("envelope sender %q, want %s (the login name, rewritten)", m.From, smSender)
	}
	if s := smHeader(m.Data, "Subject"); len(s) != 1 || s[0] != "php subject" {
		t.Errorf("Subject = %q", s)
	}
	smCheckFrom(t, m, "")
}

func TestSendmailGitSendEmail(t *testing.T) {
	git := smNeedTool(t, "git")
	// git-email installs git-send-email in git's exec path.
	execPath, _ := exec.Command(git, "--exec-path").Output()
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(execPath)), "git-send-email")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("git send-email unavailable (CI installs git-email): %v", err)
		}
		t.Skipf("git send-email unavailable: %v", err)
	}
	e := newSMEnv(t, "", true)
	repo := filepath.Join(e.dir, "repo")
	os.Mkdir(repo, 0o755)
	gitEnv := []string{"GIT_AUTHOR_DATE=2024-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2024-01-02T03:04:05Z"}
	for _, args := range [][]string{
		{"init", "-q"},
		{"config", "user.name", "Dev"},
		{"config", "user.email", "dev@example.com"},
	} {
		if res := e.runIn(t, repo, "", gitEnv, git, args...); res.code != 0 {
			t.Fatalf("git %v: %s", args, res.stderr)
		}
	}
	os.WriteFile(filepath.Join(repo, "hello.txt"), []byte("hello from a patch\n"), 0o644)
	for _, args := range [][]string{
		{"add", "hello.txt"},
		{"commit", "-q", "-m", "Add the greeting marker-gitpatch"},
		{"format-patch", "-q", "-1", "-o", "out"},
	} {
		if res := e.runIn(t, repo, "", gitEnv, git, args...); res.code != 0 {
			t.Fatalf("git %v: %s", args, res.stderr)
		}
	}
	patches, _ := filepath.Glob(filepath.Join(repo, "out", "*.patch"))
	if len(patches) != 1 {
		t.Fatalf("format-patch made %v", patches)
	}
	res := e.runIn(t, repo, "", gitEnv, git, "send-email", "--smtp-server="+e.sendmail, "--to=x@example.org",
		"--from=Dev <dev@example.com>", "--confirm=never", "--no-chain-reply-to", "--suppress-cc=all", patches[0])
	if res.code != 0 {
		t.Fatalf("git send-email: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	m := smWait(t, e.sh, "marker-gitpatch", 20*time.Second)
	// Without --envelope-sender git passes no -f: the envelope sender is
	// the login name, qualified as rewrite.sender.
	if m.From != smSender || len(m.To) != 1 || m.To[0] != "x@example.org" {
		t.Errorf("envelope %q -> %v, want %s -> [x@example.org]", m.From, m.To, smSender)
	}
	if s := smHeader(m.Data, "Subject"); len(s) != 1 || !strings.HasPrefix(s[0], "[PATCH] Add the greeting") {
		t.Errorf("Subject = %q", s)
	}
	if f := smHeader(m.Data, "From"); len(f) != 1 || f[0] != "Dev <dev@example.com>" {
		t.Errorf("From = %q, want the author unchanged", f)
	}
	if !bytes.Contains(m.Data, []byte("+hello from a patch\r\n")) {
		t.Errorf("patch body missing:\n%s", m.Data)
	}
}

// TestSendmailCron uses cron's exact command line; the message is what
// Debian's cron writes (From with the comment form, To root).
func TestSendmailCron(t *testing.T) {
	e := newSMEnv(t, "", true)
	msg := "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts /etc/cron.daily\n" +
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n" +
		"X-Cron-Env: <SHELL=/bin/sh>\n\ncron output marker-cron \xc3\xa9\n"
	e.mustShim(t, msg, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
	m := smWait(t, e.sh, "marker-cron", 20*time.Second)
	if m.From != smSender || len(m.To) != 1 || m.To[0] != smAdmin {
		t.Errorf("envelope %q -> %v, want %s -> [%s]", m.From, m.To, smSender, smAdmin)
	}
	smCheckFrom(t, m, "Cron Daemon")
	smCheckTrace(t, m, os.Getuid())

	// Without a From in the message, -F names the one relayd adds.
	e.mustShim(t, "Subject: no from\n\nmarker-cronF\n", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
	m = smWait(t, e.sh, "marker-cronF", 20*time.Second)
	smCheckFrom(t, m, "CronDaemon")
}

func TestSendmailBcc(t *testing.T) {
	e := newSMEnv(t, "", true)
	msg := "From: App <app@example.com>\nTo: to@example.org\nCc: Carol <cc@example.org>\n" +
		"Bcc: hidden@example.org,\n hidden2@example.org\nSubject: bcc\n\nmarker-bcc\n"
	e.mustShim(t, msg, "-t", "-i")
	want := map[string]bool{"to@example.org": true, "cc@example.org": true, "hidden@example.org": true, "hidden2@example.org": true}
	got := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		for _, m := range e.sh.Messages() {
			for _, r := range m.To {
				got[r] = true
			}
		}
	}
	for r := range want {
		if !got[r] {
			t.Errorf("%s did not receive the message (got %v)", r, got)
		}
	}
	for r := range got {
		if !want[r] {
			t.Errorf("unexpected recipient %s", r)
		}
	}
	for _, m := range e.sh.Messages() {
		if b := smHeader(m.Data, "Bcc"); b != nil || bytes.Contains(bytes.ToLower(m.Data), []byte("hidden")) {
			t.Errorf("a copy to %v reveals the Bcc:\n%s", m.To, m.Data)
		}
	}
}

// smReplyCodes lists the final reply codes of an SMTP server's output.
func smReplyCodes(out string) string {
	var codes []string
	for _, r := range regexp.MustCompile(`(?m)^(\d{3}) `).FindAllStringSubmatch(out, -1) {
		codes = append(codes, r[1])
	}
	return strings.Join(codes, " ")
}

func TestSendmailBs(t *testing.T) {
	e := newSMEnv(t, "", true)
	dialogue := "EHLO client.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<bs@example.org>\r\nDATA\r\n" +
		"From: app@example.com\r\nSubject: bs\r\n\r\nmarker-bs\r\n..dot-stuffed\r\n.\r\nQUIT\r\n"
	res := e.shim(t, dialogue, "-bs")
	if res.code != 0 {
		t.Fatalf("sendmail -bs: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// greeting, EHLO, MAIL, RCPT, DATA, end of data, QUIT
	if codes := smReplyCodes(res.stdout); codes != "220 250 250 250 354 250 221" {
		t.Errorf("reply codes %v, want 220 250 250 250 354 250 221:\n%s", codes, res.stdout)
	}
	m := smWait(t, e.sh, "marker-bs", 20*time.Second)
	if m.From != "app@example.com" || len(m.To) != 1 || m.To[0] != "bs@example.org" {
		t.Errorf("envelope %q -> %v", m.From, m.To)
	}
	if !bytes.Contains(m.Data, []byte("marker-bs\r\n.dot-stuffed\r\n")) {
		t.Errorf("dot-stuffing not undone:\n%s", m.Data)
	}
}

// TestSendmailDaemonDown submits 100 messages while the daemon is stopped
// (concurrently, as a burst of cron jobs would): every shim exits 0, and
// all 100 are delivered once the daemon starts again.
func TestSendmailDaemonDown(t *testing.T) {
	e := newSMEnv(t, "", true)
	e.r.stop() // the spool layout exists now
	const n = 100
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			msg := fmt.Sprintf("Subject: down %d\n\nmarker-down-%03d\n", i, i)
			if res := e.shim(t, msg, "-i", fmt.Sprintf("down%d@example.org", i)); res.code != 0 {
				errs <- fmt.Sprintf("message %d: exit %d: %s", i, res.code, res.stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
	drop, _ := os.ReadDir(filepath.Join(e.spool, "maildrop"))
	if len(drop) != n {
		t.Errorf("maildrop holds %d files, want %d", len(drop), n)
	}
	// -bs while the daemon is down: 250 only once the maildrop file is durable.
	bs := e.shim(t, "HELO php.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<bsdown@example.org>\r\nDATA\r\n"+
		"Subject: bs down\r\n\r\nmarker-down-bs\r\n.\r\nQUIT\r\n", "-bs")
	if got := smReplyCodes(bs.stdout); bs.code != 0 || got != "220 250 250 250 354 250 221" {
		t.Errorf("sendmail -bs, daemon down: exit %d\n%s%s", bs.code, bs.stdout, bs.stderr)
	}
	if len(e.sh.Messages()) != 0 {
		t.Fatalf("mail reached the smarthost while the daemon was down")
	}

	r := start(t, e.dir, e.config)
	smWait(t, e.sh, "marker-down-bs", 60*time.Second)
	msgs := e.sh.WaitMessages(t, n+1, 60*time.Second)
	seen := map[string]int{}
	for _, m := range msgs {
		if bytes.Contains(m.Data, []byte("marker-down-bs")) {
			if m.From != "app@example.com" || len(m.To) != 1 || m.To[0] != "bsdown@example.org" {
				t.Errorf("-bs envelope %q -> %v", m.From, m.To)
			}
			continue
		}
		got := regexp.MustCompile(`marker-down-\d{3}`).Find(m.Data)
		seen[string(got)]++
		if len(m.To) != 1 || m.From != smSender {
			t.Errorf("envelope %q -> %v", m.From, m.To)
		}
		smCheckTrace(t, m, os.Getuid())
	}
	for i := range n {
		if k := fmt.Sprintf("marker-down-%03d", i); seen[k] != 1 {
			t.Errorf("%s delivered %d times", k, seen[k])
		}
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would show up now
	if got := len(e.sh.Messages()); got != n+1 {
		t.Errorf("%d messages delivered, want %d", got, n+1)
	}
	drop, _ = os.ReadDir(filepath.Join(e.spool, "maildrop"))
	if len(drop) != 0 {
		t.Errorf("maildrop still holds %d files after pickup", len(drop))
	}
	r.waitLog(t, `picked up from maildrop`, 5*time.Second)
}

func TestSendmailDots(t *testing.T) {
	e := newSMEnv(t, "", true)
	in := "Subject: dots\n\nmarker-dot-%s\n.\nafter the dot\n"
	e.mustShim(t, fmt.Sprintf(in, "noi"), "dots@example.org")
	e.mustShim(t, fmt.Sprintf(in, "withi"), "-i", "dots@example.org")
	e.mustShim(t, fmt.Sprintf(in, "withoi"), "-oi", "dots@example.org")

	m := smWait(t, e.sh, "marker-dot-noi", 20*time.Second)
	if bytes.Contains(m.Data, []byte("after the dot")) {
		t.Errorf("without -i the text after a lone dot was kept:\n%s", m.Data)
	}
	if !bytes.HasSuffix(m.Data, []byte("marker-dot-noi\r\n")) {
		t.Errorf("without -i the body should end before the dot:\n%q", m.Data)
	}
	for _, k := range []string{"withi", "withoi"} {
		m := smWait(t, e.sh, "marker-dot-"+k, 20*time.Second)
		if !bytes.HasSuffix(m.Data, []byte("marker-dot-"+k+"\r\n.\r\nafter the dot\r\n")) {
			t.Errorf("%s: the dot line is not kept as content:\n%q", k, m.Data)
		}
	}
}

// smSpoolEmpty checks that nothing was queued or left half-written.
func smSpoolEmpty(t *testing.T, spool string) {
	t.Helper()
	for _, d := range []string{"msg", "meta", "tmp", "maildrop"} {
		entries, err := os.ReadDir(filepath.Join(spool, d))
		if err != nil {
			t.Errorf("%s: %v", d, err)
		}
		for _, en := range entries {
			t.Errorf("%s/%s left in the spool", d, en.Name())
		}
	}
}

func TestSendmailBadInput(t *testing.T) {
	const limit = 4096
	e := newSMEnv(t, fmt.Sprintf("max_message_bytes = %d", limit), true)
	good := "Subject: bad input\n\nbody\n"
	big := "Subject: big\n\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 3*limit/64)
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		says  string // stderr must contain this
	}{
		{"no recipients", good, nil, 64, "no recipients"},
		{"-t without To", good, []string{"-t"}, 64, "no recipients"},
		{"newline in -f", good, []string{"-f", "a@example.com\nBcc: x@example.org", "r@example.org"}, 64, "-f value contains a line break"},
		{"newline in -F", good, []string{"-F", "Name\nBcc: x@example.org", "r@example.org"}, 64, "-F value contains a line break"},
		{"CR in -r", good, []string{"-ra@example.com\r", "r@example.org"}, 64, "-r value contains a line break"},
		{"newline in recipient", good, []string{"r@example.org\nx@example.org"}, 64, "recipient value contains a line break"},
		{"unknown flag", good, []string{"-Z", "r@example.org"}, 64, "unknown option -Z"},
		{"too big", big, []string{"-i", "r@example.org"}, 69, "too big"},
	}
	check := func(t *testing.T) {
		for _, c := range cases {
			res := e.shim(t, c.stdin, c.args...)
			if res.code != c.code || !strings.Contains(res.stderr, c.says) {
				t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, res.code, res.stderr, c.code, c.says)
			}
		}
		smSpoolEmpty(t, e.spool)
	}
	t.Run("daemon up", check)
	// Bad content, which only the daemon's intake checks: with it running,
	// the shim says so with 65 (bad message data) and the daemon's reason.
	if res := e.shim(t, "Subject: nul\n\nab\x00cd\n", "-i", "r@example.org"); res.code != 65 || !strings.Contains(res.stderr, "NUL") {
		t.Errorf("NUL byte: exit %d, stderr %q; want 65 naming the NUL", res.code, res.stderr)
	}
	smSpoolEmpty(t, e.spool)
	e.r.stop()
	t.Run("daemon down", check)
	if n := len(e.sh.Messages()); n != 0 {
		t.Errorf("%d messages reached the smarthost", n)
	}
	if strings.Contains(e.r.logs(), "status=queued") {
		t.Errorf("something was queued:\n%s", e.r.logs())
	}
}

// TestSendmailWithoutSecrets is the packaged setup: the smarthost password
// reaches the daemon as the systemd credential, which does not exist in the
// shim's environment (nor could an ordinary user read it). The shim needs
// only state_dir and the size limit, so it must work regardless.
func TestSendmailWithoutSecrets(t *testing.T) {
	e := newSMEnv(t, "", false)
	cred := filepath.Join(e.dir, "credentials")
	os.Mkdir(cred, 0o700)
	os.WriteFile(filepath.Join(cred, "smarthost"), []byte("s3cret pass\n"), 0o600)
	b, _ := os.ReadFile(e.config)
	cfg := regexp.MustCompile(`(?m)^password_file = .*\n`).ReplaceAllString(string(b), "")
	os.WriteFile(e.config, []byte(cfg), 0o644)
	t.Setenv("CREDENTIALS_DIRECTORY", cred) // for the daemon only: environ() does not pass it on
	e.r = start(t, e.dir, e.config)
	e.mustShim(t, "Subject: creds\n\nmarker-creds\n", "-i", "root")
	m := smWait(t, e.sh, "marker-creds", 20*time.Second)
	if len(m.To) != 1 || m.To[0] != smAdmin {
		t.Errorf("recipients %v", m.To)
	}
}

// TestSendmailNonRoot submits as an ordinary user (nobody), through the
// socket and through the maildrop, and checks what that user cannot see.
func TestSendmailNonRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to an ordinary user")
	}
	setpriv := smNeedTool(t, "setpriv")
	e := newSMEnv(t, "", false)
	// nobody must reach the binary and the spool: the test's temp
	// directories are 0700, the harness's binary directory too.
	for d := e.dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o711)
	}
	exe := filepath.Join(e.bin, "relayd")
	smCopyFile(t, binary, exe)
	os.Remove(e.sendmail)
	if err := os.Symlink(exe, e.sendmail); err != nil {
		t.Fatal(err)
	}
	e.r = start(t, e.dir, e.config)
	const nobody = 65534
	asNobody := func(stdin string, args ...string) smResult {
		return e.run(t, stdin, nil, setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...)
	}

	// The socket is made world-writable just after the daemon logs that
	// it listens on TCP.
	sock := filepath.Join(e.spool, "public", "submit.sock")
	for i := 0; i < 200; i++ {
		if fi, err := os.Lstat(sock); err == nil && fi.Mode().Perm() == 0o666 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range []struct{ path, mode string }{
		{"", "drwx--x--x"}, {"public", "drwxr-xr-x"}, {"public/submit.sock", "Srw-rw-rw-"},
		{"maildrop", "dtrwx-wx-wx"}, {"msg", "drwx------"}, {"meta", "drwx------"},
	} {
		fi, err := os.Lstat(filepath.Join(e.spool, c.path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().String() != c.mode {
			t.Errorf("%s/%s mode %s, want %s", e.spool, c.path, fi.Mode(), c.mode)
		}
	}

	if res := asNobody("Subject: nobody\n\nmarker-nobody-socket\n", e.sendmail, "-i", "root"); res.code != 0 {
		t.Fatalf("sendmail as nobody: exit %d: %s", res.code, res.stderr)
	}
	m := smWait(t, e.sh, "marker-nobody-socket", 20*time.Second)
	smCheckTrace(t, m, nobody)
	if len(m.To) != 1 || m.To[0] != smAdmin || m.From != smSender {
		t.Errorf("envelope %q -> %v", m.From, m.To)
	}

	// Queue a message that stays (held at the smarthost) and check that
	// nobody cannot list or read the queue.
	e.sh.SetFaults(smtptest.Faults{DataReply: func(int) *smtp.SMTPError { return smtptest.Reply451() }})
	e.mustShim(t, "Subject: root's mail\n\nmarker-secret\n", "-i", "secret@example.org")
	e.r.waitLog(t, `status=deferred`, 20*time.Second)
	// msg/ID holds the message (and its committed state); meta/ID.json,
	// the deferred state, is written a moment after the log line.
	var files, metas []string
	for i := 0; i < 100 && (len(files) == 0 || len(metas) == 0); i++ {
		files, _ = filepath.Glob(filepath.Join(e.spool, "msg", "*"))
		metas, _ = filepath.Glob(filepath.Join(e.spool, "meta", "*"))
		time.Sleep(100 * time.Millisecond)
	}
	if len(files) == 0 || len(metas) == 0 {
		t.Fatalf("queued message not found in msg/ and meta/")
	}
	for _, args := range [][]string{
		{"ls", filepath.Join(e.spool, "msg")}, {"ls", filepath.Join(e.spool, "meta")},
		{"ls", filepath.Join(e.spool, "maildrop")}, {"cat", files[0]}, {"cat", metas[0]},
	} {
		if res := asNobody("", args...); res.code == 0 || strings.Contains(res.stdout, "marker-secret") {
			t.Errorf("nobody could run %v: %s", args, res.stdout)
		}
	}
	e.sh.SetFaults(smtptest.Faults{})

	// Daemon down: nobody's message goes to the maildrop, owned by nobody,
	// and is delivered with nobody's uid once the daemon is back.
	e.r.stop()
	if res := asNobody("Subject: nobody\n\nmarker-nobody-drop\n", e.sendmail, "-i", "root"); res.code != 0 {
		t.Fatalf("sendmail as nobody, daemon down: exit %d: %s", res.code, res.stderr)
	}
	e.r = start(t, e.dir, e.config)
	m = smWait(t, e.sh, "marker-nobody-drop", 30*time.Second)
	smCheckTrace(t, m, nobody)
}

func smCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSendmailPersonalities covers -C, the null sender, -N, and the binary
// invoked as mailq and newaliases, and sendmail -bp and -q.
func TestSendmailPersonalities(t *testing.T) {
	e := newSMEnv(t, "", true)
	e.sh.SetFaults(smtptest.Faults{DataReply: func(int) *smtp.SMTPError { return smtptest.Reply451() }})
	for _, name := range []string{"mailq", "newaliases"} {
		if err := os.Symlink(binary, filepath.Join(e.bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := []string{"RELAYD_CONFIG="} // overrides environ's: only -C names the config
	if res := e.run(t, "Subject: c\n\nmarker-pers\n", noEnv, e.sendmail, "-C", e.config, "-f", "<>", "-N", "never", "-oi", "held@example.org"); res.code != 0 {
		t.Fatalf("sendmail -C: exit %d: %s", res.code, res.stderr)
	}
	e.r.waitLog(t, `from=<> to=held@example.org status=queued`, 20*time.Second)
	e.r.waitLog(t, `status=deferred`, 20*time.Second)

	for _, c := range [][]string{{filepath.Join(e.bin, "mailq")}, {e.sendmail, "-bp"}} {
		res := e.run(t, "", nil, c[0], c[1:]...)
		if res.code != 0 || !strings.Contains(res.stdout, "held@example.org") || !strings.Contains(res.stdout, "1 message") {
			t.Errorf("%v: exit %d, output %q %q; want the held message", c, res.code, res.stdout, res.stderr)
		}
	}
	if res := e.run(t, "", noEnv, e.sendmail, "-C", e.config, "-bp"); res.code != 0 || !strings.Contains(res.stdout, "held@example.org") {
		t.Errorf("sendmail -C -bp: exit %d, output %q %q", res.code, res.stdout, res.stderr)
	}
	if res := e.run(t, "", nil, filepath.Join(e.bin, "newaliases")); res.code != 0 {
		t.Errorf("newaliases: exit %d: %s", res.code, res.stderr)
	}

	e.sh.SetFaults(smtptest.Faults{})
	if res := e.run(t, "", noEnv, e.sendmail, "-C", e.config, "-q"); res.code != 0 {
		t.Errorf("sendmail -q: exit %d: %s", res.code, res.stderr)
	}
	m := smWait(t, e.sh, "marker-pers", 20*time.Second)
	if m.From != "" || len(m.To) != 1 || m.To[0] != "held@example.org" {
		t.Errorf("envelope %q -> %v, want <> -> [held@example.org]", m.From, m.To)
	}
	if res := e.run(t, "", nil, filepath.Join(e.bin, "mailq")); res.code != 0 || !strings.Contains(res.stdout, "empty") {
		t.Errorf("mailq after delivery: exit %d, %q", res.code, res.stdout)
	}
}

// TestMaildropUntrusted writes maildrop entries by hand, as a hostile local
// user could, bypassing the shim: the daemon must apply the same limits and
// checks as on the network, quarantine what it refuses (never deliver it,
// never delete it silently), and not be fooled by symlinks, hard links or
// FIFOs (which would block a plain open).
func TestMaildropUntrusted(t *testing.T) {
	e := newSMEnv(t, "max_message_bytes = 4096", true)
	drop := filepath.Join(e.spool, "maildrop")
	outside := filepath.Join(e.dir, "outside")
	os.Mkdir(outside, 0o755)
	entry := func(env, msg string) string { return "RELAYD-MAILDROP 1\n" + env + "\n" + msg }
	// Entries appear whole (written beside, then renamed in), as the shim
	// makes them: a half-written file would be refused for its truncation.
	write := func(dir, name, data string) string {
		p := filepath.Join(dir, name)
		tmp := filepath.Join(e.dir, ".part-"+name)
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := func(marker string) string {
		return entry(`{"from":"cron","rcpts":["root"],"uid":0}`, "Subject: hand\r\n\r\n"+marker+"\r\n")
	}
	if err := syscall.Mkfifo(filepath.Join(drop, "00-fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"01-junk":      "hello, not a maildrop file\n",
		"02-injection": entry(`{"from":"a@example.com","rcpts":["x@example.org\nBcc: y@example.org"],"uid":0}`, "Subject: x\r\n\r\nmarker-injected\r\n"),
		"03-unknown":   entry(`{"from":"a@example.com","rcpts":["x@example.org"],"uid":0,"trusted":true}`, "Subject: x\r\n\r\nmarker-unknown\r\n"),
		"04-norcpt":    entry(`{"from":"a@example.com","rcpts":[],"uid":0}`, "Subject: x\r\n\r\nmarker-norcpt\r\n"),
		"05-toobig":    entry(`{"from":"a@example.com","rcpts":["x@example.org"],"uid":0}`, "Subject: x\r\n\r\nmarker-toobig\r\n"+strings.Repeat("x", 10000)+"\r\n"),
		"06-badaddr":   entry(`{"from":"a@@example.com","rcpts":["x@example.org"],"uid":0}`, "Subject: x\r\n\r\nmarker-badaddr\r\n"),
	}
	// A symlink and a hard link to well-formed entries outside the
	// maildrop: following them would deliver another user's file under
	// the wrong uid.
	if err := os.Symlink(write(outside, "target1", good("marker-symlinked")), filepath.Join(drop, "07-symlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(write(outside, "target2", good("marker-hardlinked")), filepath.Join(drop, "08-hardlink")); err != nil {
		t.Fatal(err)
	}
	for name, data := range refused {
		write(drop, name, data)
	}
	write(drop, "09-good", good("marker-handmade"))

	m := smWait(t, e.sh, "marker-handmade", 20*time.Second)
	if m.From != smSender || len(m.To) != 1 || m.To[0] != smAdmin {
		t.Errorf("hand-made entry: envelope %q -> %v, want %s -> [%s]", m.From, m.To, smSender, smAdmin)
	}
	smCheckTrace(t, m, os.Getuid())

	want := []string{"00-fifo", "01-junk", "02-injection", "03-unknown", "04-norcpt", "05-toobig", "06-badaddr", "07-symlink", "08-hardlink"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := 0
		for _, n := range want {
			if _, err := os.Lstat(filepath.Join(e.spool, "corrupt", "maildrop-"+n)); err != nil {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			ls, _ := os.ReadDir(filepath.Join(e.spool, "corrupt"))
			var names []string
			for _, l := range ls {
				names = append(names, l.Name())
			}
			t.Fatalf("%d refused entries not quarantined; corrupt/ holds %v\n%s", missing, names, e.r.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left, _ := os.ReadDir(drop); len(left) != 0 {
		t.Errorf("maildrop still holds %d entries", len(left))
	}
	// The sender of a well-formed entry that can never be accepted was told
	// "sent" by the shim's exit 0: it gets a failure notice instead of
	// silence.
	deadline = time.Now().Add(20 * time.Second)
	for {
		found := false
		for _, m := range e.sh.Messages() {
			if m.From == "" && len(m.To) == 1 && m.To[0] == "a@example.com" &&
				bytes.Contains(m.Data, []byte("552 5.3.4")) && bytes.Contains(m.Data, []byte("x@example.org")) {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure notice for the oversized maildrop entry\n%s", e.r.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range []string{filepath.Join(outside, "target1"), filepath.Join(outside, "target2")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("link target %s was touched: %v", p, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	mail, notices := 0, 0
	for _, m := range e.sh.Messages() {
		if m.From == "" {
			notices++ // failure notices about rejected entries (toobig, badaddr)
			continue
		}
		mail++
		t.Logf("delivered: %s -> %v", m.From, m.To)
	}
	if mail != 1 {
		t.Errorf("%d messages delivered, want only the hand-made good one", mail)
	}
	if notices != 2 {
		t.Errorf("%d failure notices, want 2 (oversized entry to its sender, bad sender to the admin)", notices)
	}
}
