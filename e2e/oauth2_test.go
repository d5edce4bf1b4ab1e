package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"relayd/internal/oauthtest"
	"relayd/internal/smtptest"
	"relayd/token"
)

// oauthEnv is a token endpoint, a smarthost that accepts only its
// currently valid tokens, and a relayd config using them.
type oauthEnv struct {
	ts  *oauthtest.Server
	sh  *smtptest.Server
	dir string
	key string // grant jwt: the service account key file
	// accept wraps ts.Valid; a test may replace it before starting relayd.
	accept func(user, tok string) bool
	mu     sync.Mutex
}

const mailbox = "relay@example.com"

func newOAuthEnv(t *testing.T, opts oauthtest.Options) *oauthEnv {
	t.Helper()
	opts.Mailbox = mailbox
	e := &oauthEnv{dir: t.TempDir()}
	e.ts = oauthtest.New(t, opts)
	e.accept = e.ts.Valid
	e.sh = smtptest.New(t, smtptest.Options{RequireTLS: true, OAuth: func(user, tok string) bool {
		e.mu.Lock()
		f := e.accept
		e.mu.Unlock()
		return f(user, tok)
	}})
	return e
}

// config writes relayd.toml for grant and mechanism (auth).
func (e *oauthEnv) config(t *testing.T, grant, auth string) string {
	t.Helper()
	secret := filepath.Join(e.dir, "oauth2.secret")
	os.WriteFile(secret, []byte(e.ts.ClientSecret()+"\n"), 0o600)
	var o strings.Builder
	fmt.Fprintf(&o, "grant = %q\nscopes = [\"https://outlook.office365.com/.default\"]\nca_file = %q\ntimeout = \"5s\"\n", grant, e.ts.CA().WritePEM(t))
	switch grant {
	case "jwt":
		if e.key == "" {
			e.key = e.ts.ServiceAccountKey(t, "relayd@project.iam.gserviceaccount.com")
		}
		fmt.Fprintf(&o, "key_file = %q\n", e.key)
	default:
		fmt.Fprintf(&o, "token_url = %q\ndevice_auth_url = %q\nclient_id = %q\n", e.ts.TokenURL(), e.ts.DeviceAuthURL(), e.ts.ClientID())
		if grant == "client_credentials" {
			fmt.Fprintf(&o, "client_secret_file = %q\n", secret)
		}
	}
	cfg := fmt.Sprintf("hostname = %q\nstate_dir = %q\n[listen]\nsmtp = [\"127.0.0.1:0\"]\nidle_timeout = \"3s\"\n"+
		"[upstream]\naddress = %q\nca_file = %q\nusername = %q\nauth = %q\ntimeout = \"5s\"\n[upstream.oauth2]\n%s"+
		"[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n",
		hostname, filepath.Join(e.dir, "spool"), e.sh.Addr(), e.sh.CA().WritePEM(t), mailbox, auth, o.String())
	path := filepath.Join(e.dir, "relayd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *oauthEnv) storeFile() string {
	return filepath.Join(e.dir, "spool", "oauth2", token.FileName(mailbox))
}

// seed stores a refresh token as relayd oauth2 login would.
func (e *oauthEnv) seed(t *testing.T) {
	t.Helper()
	os.MkdirAll(filepath.Dir(e.storeFile()), 0o700)
	if err := os.WriteFile(e.storeFile(), []byte(`{"refresh_token":"`+e.ts.SeedRefreshToken()+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
}

// noSecretsIn fails if any token or secret of the token server, or the
// service account's private key, appears in log.
func (e *oauthEnv) noSecretsIn(t *testing.T, log string) {
	t.Helper()
	for _, s := range e.ts.Secrets() {
		if s != "" && strings.Contains(log, s) {
			t.Errorf("secret %.12s... in the log", s)
		}
	}
	if strings.Contains(log, "PRIVATE KEY") {
		t.Error("private key in the log")
	}
}

func message(n int) string {
	return fmt.Sprintf("From: app@example.com\r\nTo: dest@example.net\r\nSubject: oauth2 %d\r\n\r\nbody %d\r\n", n, n)
}

// Mail relays with every grant and both mechanisms, with a 2.5 KB token
// (far over the 512-octet command line: go-smtp sends it as the answer to
// the first 334, RFC 4954 §4).
func TestOAuth2GrantsAndMechanisms(t *testing.T) {
	for _, grant := range []string{"client_credentials", "refresh_token", "jwt"} {
		for _, auth := range []string{"xoauth2", "oauthbearer"} {
			t.Run(grant+"/"+auth, func(t *testing.T) {
				e := newOAuthEnv(t, oauthtest.Options{TokenLen: 2500})
				if grant == "refresh_token" {
					e.seed(t)
				}
				r := start(t, e.dir, e.config(t, grant, auth))
				if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(1)); err != nil {
					t.Fatal(err)
				}
				msgs := e.sh.WaitMessages(t, 1, 30*time.Second)
				if msgs[0].AuthUser != mailbox {
					t.Errorf("auth user %q", msgs[0].AuthUser)
				}
				if issued := e.ts.Issued(grant); issued != 1 {
					t.Errorf("%d tokens issued, want 1", issued)
				}
				r.waitLog(t, `msg=mail .*status=sent`, 10*time.Second)
				r.stop()
				e.noSecretsIn(t, r.logs())
			})
		}
	}
}

// A token that expires between two messages is refreshed before the next
// login, with no failed login and no deferred delivery.
func TestOAuth2TokenExpiresBetweenMessages(t *testing.T) {
	e := newOAuthEnv(t, oauthtest.Options{Lifetime: 3 * time.Second, StrictRotation: true})
	e.seed(t)
	r := start(t, e.dir, e.config(t, "refresh_token", "xoauth2"))
	if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(1)); err != nil {
		t.Fatal(err)
	}
	e.sh.WaitMessages(t, 1, 30*time.Second)
	// Let the token expire, and drop the pooled (authenticated)
	// connection so the next message needs a new login.
	deadline := time.Now().Add(10 * time.Second)
	for e.ts.Valid(mailbox, firstValid(e)) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	e.sh.Stop()
	e.sh.Start()
	if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(2)); err != nil {
		t.Fatal(err)
	}
	e.sh.WaitMessages(t, 2, 30*time.Second)
	if n := e.ts.Issued("refresh_token"); n < 2 {
		t.Errorf("%d refreshes, want at least 2", n)
	}
	if a, l := e.sh.AuthAttempts(), e.sh.Logins(); a != l {
		t.Errorf("%d AUTH attempts, %d successful: a login failed", a, l)
	}
	r.stop()
	logs := r.logs()
	if strings.Contains(logs, "status=deferred") {
		t.Errorf("a delivery was deferred:\n%s", logs)
	}
	e.noSecretsIn(t, logs)
}

// firstValid returns some access token the server issued that is still
// valid, or "" (the loop above waits until none is).
func firstValid(e *oauthEnv) string {
	for _, s := range e.ts.Secrets() {
		if e.ts.Valid(mailbox, s) {
			return s
		}
	}
	return ""
}

// A rotated refresh token survives kill -9 right after rotation: the
// daemon is killed the moment it logs in with the access token that came
// with the new refresh token (the old one is dead: strict rotation), and
// the next start refreshes with the new one.
func TestOAuth2RotationSurvivesKill9(t *testing.T) {
	e := newOAuthEnv(t, oauthtest.Options{StrictRotation: true})
	e.seed(t)
	path := e.config(t, "refresh_token", "xoauth2")
	r := start(t, e.dir, path)
	var killed atomic.Bool
	killedc := make(chan struct{})
	e.mu.Lock()
	e.accept = func(user, tok string) bool {
		if killed.CompareAndSwap(false, true) {
			r.cmd.Process.Signal(syscall.SIGKILL)
			close(killedc)
			return false
		}
		return e.ts.Valid(user, tok)
	}
	e.mu.Unlock()
	if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-killedc:
	case <-time.After(30 * time.Second):
		t.Fatalf("relayd never logged in:\n%s", r.logs())
	}
	r.cmd.Wait()
	if e.ts.Rotations() != 1 {
		t.Fatalf("rotations = %d", e.ts.Rotations())
	}
	first := r.logs()
	r.start() // same spool: the message is still queued
	e.sh.WaitMessages(t, 1, 30*time.Second)
	if e.ts.Rotations() != 2 {
		t.Errorf("rotations = %d, want 2 (the restart refreshed with the rotated token)", e.ts.Rotations())
	}
	r.stop()
	logs := r.logs()
	if strings.Contains(logs, "invalid_grant") {
		t.Errorf("the restart used a dead refresh token:\n%s", logs)
	}
	e.noSecretsIn(t, first+logs)
}

// The token endpoint down: mail is accepted and deferred (a session-level
// AUTH failure), then delivered once it returns; nothing is bounced.
func TestOAuth2TokenEndpointDown(t *testing.T) {
	e := newOAuthEnv(t, oauthtest.Options{})
	e.ts.Stop()
	r := start(t, e.dir, e.config(t, "client_credentials", "oauthbearer"))
	if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(1)); err != nil {
		t.Fatalf("submission refused while the token endpoint is down: %v", err)
	}
	r.waitLog(t, `msg=mail .*status=deferred`, 30*time.Second)
	if len(e.sh.Messages()) != 0 || e.sh.AuthAttempts() != 0 {
		t.Fatalf("smarthost saw AUTH or mail without a token")
	}
	e.ts.Start()
	e.sh.WaitMessages(t, 1, 30*time.Second)
	time.Sleep(time.Second) // give a wrong bounce the chance to show
	msgs := e.sh.Messages()
	if len(msgs) != 1 || msgs[0].From != "app@example.com" {
		t.Fatalf("messages %+v, want only the original (no bounce)", msgs)
	}
	r.stop()
	logs := r.logs()
	t.Log(logs)
	if strings.Contains(logs, "status=bounced") || strings.Contains(logs, "status=failed") {
		t.Errorf("bounced or failed:\n%s", logs)
	}
	if !regexp.MustCompile(`oauth2 token refresh.*result=unreachable`).MatchString(logs) {
		t.Errorf("no refresh failure logged:\n%s", logs)
	}
	e.noSecretsIn(t, logs)
}

// relayd oauth2 login runs the device flow against the token endpoint and
// stores the refresh token; serve then relays with it.
func TestOAuth2LoginThenServe(t *testing.T) {
	e := newOAuthEnv(t, oauthtest.Options{})
	path := e.config(t, "refresh_token", "xoauth2")
	cmd := exec.Command(binary, "oauth2", "login", "--config", path)
	cmd.Env = append(os.Environ(), "RELAYD_CONFIG=")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	codeRE := regexp.MustCompile(`^\s+([A-Z0-9_-]{8})$`)
	sc := bufio.NewScanner(stdout)
	approved := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := codeRE.FindStringSubmatch(line); m != nil && !approved {
			approved = e.ts.Approve(m[1])
		}
	}
	if err := cmd.Wait(); err != nil || !approved {
		t.Fatalf("login: %v (approved %v)\nstdout:\n%s\nstderr:\n%s", err, approved, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), e.ts.URL()+"/device") || !strings.Contains(out.String(), "Signed in.") {
		t.Errorf("output:\n%s", out.String())
	}
	fi, err := os.Stat(e.storeFile())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file: %v %v", err, fi)
	}
	r := start(t, e.dir, path)
	if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(1)); err != nil {
		t.Fatal(err)
	}
	e.sh.WaitMessages(t, 1, 30*time.Second)
	if e.ts.Issued("device_code") != 1 || e.ts.Issued("refresh_token") != 1 {
		t.Errorf("device %d refresh %d", e.ts.Issued("device_code"), e.ts.Issued("refresh_token"))
	}
	r.stop()
	e.noSecretsIn(t, out.String()+stderr.String()+r.logs())
}

// kill -9 the moment the token endpoint has answered a refresh with a new
// refresh token (relayd may or may not have saved it yet). With the old one
// still valid until the new one is used, as Microsoft does, the restart
// works with whichever the file holds, and never with a replaced one.
func TestOAuth2KilledAtRotation(t *testing.T) {
	e := newOAuthEnv(t, oauthtest.Options{})
	e.seed(t)
	path := e.config(t, "refresh_token", "xoauth2")
	r := start(t, e.dir, path)
	killedc := make(chan struct{})
	var once sync.Once
	e.ts.OnIssued(func(string) {
		once.Do(func() {
			r.cmd.Process.Signal(syscall.SIGKILL)
			close(killedc)
		})
	})
	if err := r.send(t, "app@example.com", []string{"dest@example.net"}, message(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-killedc:
	case <-time.After(30 * time.Second):
		t.Fatalf("relayd never refreshed:\n%s", r.logs())
	}
	r.cmd.Wait()
	e.ts.OnIssued(nil)
	first := r.logs()
	r.start()
	e.sh.WaitMessages(t, 1, 30*time.Second)
	r.stop()
	logs := r.logs()
	if strings.Contains(logs, "invalid_grant") {
		t.Errorf("the restart used a dead refresh token:\n%s", logs)
	}
	e.noSecretsIn(t, first+logs)
}
