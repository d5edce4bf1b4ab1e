// Package e2e drives the real relayd binary: it is built once, run as a
// subprocess on 127.0.0.1:0 with a config written by the test, and relays
// to an in-process smarthost (internal/smtptest) that requires STARTTLS and
// AUTH.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
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

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relayd-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "relayd")
	out, err := exec.Command("go", "build", "-race", "-o", binary, "relayd/cmd/relayd").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building relayd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const hostname = "relay.test.example"

// smarthost starts the test smarthost: STARTTLS and AUTH required.
func smarthost(t *testing.T, f smtptest.Faults) *smtptest.Server {
	return smtptest.New(t, smtptest.Options{RequireTLS: true, Users: map[string]string{"relayuser": "s3cret pass"}, Faults: f})
}

// relayd is one running daemon.
type relayd struct {
	t      *testing.T
	dir    string
	config string
	cmd    *exec.Cmd
	addr   string

	mu  sync.Mutex
	log bytes.Buffer
}

// config writes relayd.toml pointing at sh (nil: no smarthost) with extra
// TOML appended to the top level (before any table) and to [queue].
func writeConfig(t *testing.T, dir string, sh *smtptest.Server, top, queueExtra string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "hostname = %q\nstate_dir = %q\n%s\n", hostname, filepath.Join(dir, "spool"), top)
	b.WriteString("[listen]\nsmtp = [\"127.0.0.1:0\"]\nidle_timeout = \"3s\"\n")
	if sh != nil {
		pw := filepath.Join(dir, "smarthost.secret")
		os.WriteFile(pw, []byte("s3cret pass\n"), 0o600)
		fmt.Fprintf(&b, "[upstream]\naddress = %q\nca_file = %q\nusername = \"relayuser\"\npassword_file = %q\ntimeout = \"5s\"\n",
			sh.Addr(), sh.CA().WritePEM(t), pw)
	}
	fmt.Fprintf(&b, "[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n%s\n", queueExtra)
	path := filepath.Join(dir, "relayd.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func start(t *testing.T, dir, config string) *relayd {
	t.Helper()
	r := &relayd{t: t, dir: dir, config: config}
	r.start()
	t.Cleanup(r.stop)
	return r
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+) mode=smtp`)

func (r *relayd) start() {
	r.t.Helper()
	cmd := exec.Command(binary, "serve", "--config", r.config)
	cmd.Env = append(os.Environ(), "RELAYD_CONFIG=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.cmd = cmd
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.log.WriteString(line + "\n")
			r.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case r.addr = <-addrc:
	case <-time.After(30 * time.Second):
		r.t.Fatalf("relayd did not start:\n%s", r.logs())
	}
}

func (r *relayd) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// stop sends SIGTERM and waits.
func (r *relayd) stop() {
	if r.cmd == nil || r.cmd.ProcessState != nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-done
		r.t.Errorf("relayd did not stop on SIGTERM within 30s")
	}
}

func (r *relayd) kill() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
}

// dial opens an SMTP client session to relayd from 127.0.0.1.
func (r *relayd) dial(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("app.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// send submits one message and returns the server's error, if any.
func (r *relayd) send(t *testing.T, from string, to []string, msg string) error {
	t.Helper()
	c := r.dial(t)
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// waitLog waits until the daemon's log matches re.
func (r *relayd) waitLog(t *testing.T, re string, timeout time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if rx.MatchString(r.logs()) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("log never matched %q:\n%s", re, r.logs())
}

func code(err error) int {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return 0
}

var _ = tls.VersionTLS12
var _ net.Conn
