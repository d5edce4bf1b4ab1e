package postfixsmarthost

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const postfixBin = "/usr/sbin/postfix"

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// postfix is one private Postfix instance.
type postfix struct {
	dir, conf, mail, log string
	addr                 string
}

func startPostfix(t *testing.T, dir string) *postfix {
	t.Helper()
	p := &postfix{dir: dir, conf: filepath.Join(dir, "conf"), mail: filepath.Join(dir, "mail"), log: filepath.Join(dir, "postfix.log")}
	port := freePort(t)
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	pf, err := user.Lookup("postfix")
	if err != nil {
		t.Skipf("no postfix user: %v", err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no nobody user: %v", err)
	}
	for _, d := range []string{p.conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data"), p.mail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chown(t, filepath.Join(dir, "data"), pf)
	chown(t, p.mail, nobody)
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(p.conf, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.cf", fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = smarthost.test.example
mydomain = test.example
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
biff = no
virtual_mailbox_domains = example.net
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:%[2]s
virtual_gid_maps = static:%[3]s
virtual_minimum_uid = 100
header_checks = regexp:%[1]s/conf/header_checks
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access regexp:%[1]s/conf/recipient_access, permit_mynetworks, reject
smtpd_end_of_data_restrictions = check_sender_access regexp:%[1]s/conf/sender_access
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
`, dir, nobody.Uid, nobody.Gid))
	write("header_checks", "/^Subject: reject me/ REJECT 5.7.1 content rejected by header_checks\n")
	// A 4xx to the final dot, as an ISP's "451 quota exceeded".
	write("sender_access", "/^heidi@example\\.net$/ 451 4.2.2 mailbox over quota, try again later\n")
	write("recipient_access", "/^refused@example\\.net$/ REJECT 5.1.1 no such user here\n")
	// Only the services this test needs; smtpd on its own loopback port.
	write("master.cf", fmt.Sprintf(`%s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000    0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
showq     unix  n       -       n       -       -       showq
`, p.addr))
	if out, err := exec.Command(postfixBin, "-c", p.conf, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(p.log)
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		// Our instance only: -c names its config directory.
		exec.Command(postfixBin, "-c", p.conf, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(p.log)
			t.Logf("postfix log:\n%s", log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.log)
			t.Fatalf("postfix smtpd never listened on %s: %v\n%s", p.addr, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func chown(t *testing.T, path string, u *user.User) {
	t.Helper()
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// message is one delivered message: its header block and body, with the
// Maildir's LF line ends.
type message struct {
	file           string
	header, body   string
	subject, rpath string
}

// messages reads the Maildir.
func (p *postfix) messages(t *testing.T) []message {
	return readMaildir(t, filepath.Join(p.mail, "Maildir"))
}

// readMaildir reads the messages delivered into a Maildir.
func readMaildir(t *testing.T, maildir string) []message {
	t.Helper()
	var out []message
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(maildir, sub, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			h, body, _ := strings.Cut(string(b), "\n\n")
			m := message{file: f, header: h, body: body}
			for _, l := range strings.Split(h, "\n") {
				if v, ok := strings.CutPrefix(l, "Subject: "); ok {
					m.subject = v
				}
				if k, v, ok := strings.Cut(l, ": "); ok && strings.EqualFold(k, "Return-Path") {
					m.rpath = v
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// connects counts smtpd's "connect from" lines: one per SMTP connection.
func (p *postfix) connects() int {
	b, _ := os.ReadFile(p.log)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "postfix/smtpd[") && strings.Contains(l, ": connect from") {
			n++
		}
	}
	return n
}

// relayd is the daemon under test.
type relayd struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  bytes.Buffer
}

func (r *relayd) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+) mode=smtp`)

func startRelayd(t *testing.T, dir, smarthost string) *relayd {
	t.Helper()
	bin := filepath.Join(dir, "relayd")
	if out, err := exec.Command("go", "build", "-o", bin, "relayd/cmd/relayd").CombinedOutput(); err != nil {
		t.Fatalf("building relayd: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "relayd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname = "relay.test.example"
state_dir = %q

[listen]
smtp = ["127.0.0.1:0"]

[upstream]
address = %q
tls = "none"
timeout = "20s"

[queue]
concurrency = 1
min_backoff = "10m"
max_backoff = "1h"

[rewrite]
admin = "postmaster@example.net"
`, filepath.Join(dir, "spool"), smarthost)), 0o644)
	r := &relayd{}
	r.cmd = exec.Command(bin, "serve", "--config", cfg)
	r.cmd.Env = append(os.Environ(), "RELAYD_CONFIG=")
	stderr, _ := r.cmd.StderrPipe()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			r.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("relayd log:\n%s", r.logs())
		}
	})
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.log.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case r.addr = <-addrc:
	case <-time.After(60 * time.Second):
		t.Fatalf("relayd did not start:\n%s", r.logs())
	}
	return r
}

// TestPostfixRefusalThenGoodMessage is the issue 20 end-to-end run.
func TestPostfixRefusalThenGoodMessage(t *testing.T) {
	if os.Getenv("RELAYD_POSTFIX_TEST") != "1" {
		t.Skip("set RELAYD_POSTFIX_TEST=1 to run against a private Postfix instance (needs root and postfix)")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root (Postfix's master)")
	}
	if _, err := os.Stat(postfixBin); err != nil {
		t.Skip("postfix is not installed")
	}
	// Postfix's processes run as the postfix user and must reach the
	// queue: a world-traversable directory of our own.
	dir, err := os.MkdirTemp("", "relayd-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	pf := startPostfix(t, dir)
	refusalScenario(t, dir, "Postfix", pf.addr, pf.messages, pf.connects)
}

// refusalScenario runs relayd against a smarthost at addr that refuses
// "Subject: reject me" at the end of DATA, refused@example.net at RCPT and
// answers 4xx to the final dot of mail from heidi@example.net, and
// delivers the rest for example.net into a Maildir that messages reads;
// connects counts the SMTP connections it accepted.
func refusalScenario(t *testing.T, dir, mta, addr string, messages func(*testing.T) []message, connects func() int) {
	r := startRelayd(t, dir, addr)
	type msg struct{ from, to, subject, body string }
	good := func(n int) string {
		return fmt.Sprintf("Good message %d.\r\n.a line that starts with a dot\r\n\r\ntrailing text %d\r\n", n, n)
	}
	msgs := []msg{
		{"alice@example.net", "bob@example.net", "reject me", "this one Postfix refuses at the end of DATA\r\n"},
		{"carol@example.net", "dave@example.net", "good 1", good(1)},
		{"erin@example.net", "refused@example.net", "bad recipient", "the recipient is refused at RCPT\r\n"},
		{"frank@example.net", "grace@example.net", "good 2", good(2)},
		{"heidi@example.net", "ivan@example.net", "defer me", "Postfix answers 450 to the final dot\r\n"},
		{"judy@example.net", "mallory@example.net", "good 3", good(3)},
	}
	// One client connection to relayd, one message after the other: the
	// queue (concurrency 1) delivers them in order over one pooled
	// connection to Postfix.
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("app.test.example"); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		text := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s", m.from, m.to, m.subject, m.body)
		if err := c.Mail(m.from); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(m.to); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(text))
		if err := w.Close(); err != nil {
			t.Fatalf("%s: %v", m.subject, err)
		}
	}
	c.Quit()

	// Expected in the Maildir: good 1-3, and two bounces (for "reject me"
	// and "bad recipient") sent by relayd with the null sender. "defer me"
	// stays in relayd's queue.
	deadline := time.Now().Add(90 * time.Second)
	var got []message
	for {
		got = messages(t)
		if len(got) >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Give a stray extra message (an empty one, a wrong bounce) the time
	// to show up: relayd has nothing else to send.
	time.Sleep(2 * time.Second)
	got = messages(t)

	bySubject := map[string][]message{}
	var bounces []message
	for _, m := range got {
		if strings.TrimSpace(m.body) == "" {
			t.Errorf("an empty message was delivered: %s\n%s", m.file, m.header)
		}
		if m.rpath == "<>" {
			bounces = append(bounces, m)
			continue
		}
		bySubject[m.subject] = append(bySubject[m.subject], m)
	}
	for n := 1; n <= 3; n++ {
		s := fmt.Sprintf("good %d", n)
		ms := bySubject[s]
		if len(ms) != 1 {
			t.Errorf("%q arrived %d times, want once", s, len(ms))
			continue
		}
		if want := strings.ReplaceAll(good(n), "\r\n", "\n"); ms[0].body != want {
			t.Errorf("%q arrived altered:\n got %q\nwant %q", s, ms[0].body, want)
		}
	}
	for s := range bySubject {
		if !strings.HasPrefix(s, "good ") {
			t.Errorf("%q was delivered although %s refused it", s, mta)
		}
	}
	if len(bounces) != 2 {
		t.Errorf("%d bounces, want 2 (for \"reject me\" and \"bad recipient\")", len(bounces))
	}
	for _, b := range bounces {
		text := b.header + "\n" + b.body
		switch {
		case strings.Contains(text, "content rejected by ") && strings.Contains(text, "alice@example.net"):
		case strings.Contains(text, "no such user here") && strings.Contains(text, "erin@example.net"):
		default:
			t.Errorf("unexpected bounce (an innocent message bounced?):\n%s", text)
		}
		if strings.Contains(text, "503") || strings.Contains(text, "nested MAIL") {
			t.Errorf("bounce for a 503:\n%s", text)
		}
	}
	logs := r.logs()
	if !regexp.MustCompile(`status=deferred[^\n]*4\.2\.2`).MatchString(logs) && !strings.Contains(logs, "over quota") {
		t.Errorf("the deferred message was not logged as deferred")
	}
	if regexp.MustCompile(`to=ivan@example.net[^\n]*status=failed|status=failed[^\n]*to=ivan@example.net`).MatchString(logs) {
		t.Errorf("the deferred message failed")
	}
	// relayd keeps its connection open (idle) past this point, so count
	// the connects: the readiness probe's and relayd's one.
	if n := connects(); n != 2 {
		t.Errorf("%d smtpd connections, want 2 (the readiness probe and one from relayd for every message)", n)
	}
}
