package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"relayd/internal/oauthtest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) observe(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }
func (r *results) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

type env struct {
	srv  *oauthtest.Server
	clk  *clock
	logs *syncWriter
	res  *results
	cfg  Config
}

func newEnv(t *testing.T, opts oauthtest.Options, grant string) *env {
	t.Helper()
	srv := oauthtest.New(t, opts)
	e := &env{srv: srv, clk: &clock{t: time.Now()}, logs: &syncWriter{w: &bytes.Buffer{}}, res: &results{}}
	e.cfg = Config{
		Grant: grant, TokenURL: srv.TokenURL(), DeviceAuthURL: srv.DeviceAuthURL(),
		ClientID: srv.ClientID(), ClientSecret: srv.ClientSecret(),
		Scopes:    []string{"https://outlook.office365.com/.default"},
		StoreFile: filepath.Join(t.TempDir(), "oauth2", FileName(srv.Mailbox())),
		RootCAs:   srv.CA().Pool(), Timeout: 10 * time.Second, RetryAfter: time.Nanosecond,
		Observe: e.res.observe, Clock: e.clk.now,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() {
		if l := e.logs.String(); strings.Contains(l, srv.ClientSecret()) || strings.Contains(l, "rt-") {
			t.Errorf("secret or refresh token in logs:\n%s", l)
		}
	})
	return e
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (e *env) source(t *testing.T) *Source {
	t.Helper()
	s, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) seed(t *testing.T) string {
	t.Helper()
	rt := e.srv.SeedRefreshToken()
	if err := saveRefresh(e.cfg.StoreFile, stored{RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	return rt
}

func storedRefresh(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st stored
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.RefreshToken
}

func wantKind(t *testing.T, err error, k Kind, temporary bool) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v, want *Error %s", err, err, k)
	}
	if e.Kind != k || e.Temporary() != temporary {
		t.Fatalf("err = %v: kind %s temporary %v, want %s %v", e, e.Kind, e.Temporary(), k, temporary)
	}
	if e.Hint() == "" {
		t.Errorf("no hint for %v", e)
	}
	return e
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, oauthtest.Options{}, GrantClientCredentials)
	s := e.source(t)
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !e.srv.Valid(e.srv.Mailbox(), tok) {
		t.Fatal("token not valid")
	}
	again, _ := s.Token(context.Background())
	if again != tok || e.srv.Issued("client_credentials") != 1 {
		t.Errorf("token not cached: issued %d", e.srv.Issued("client_credentials"))
	}
	if got := e.res.list(); len(got) != 1 || got[0] != "ok" {
		t.Errorf("observed %q", got)
	}

	e.cfg.ClientSecret = "wrong-secret"
	_, err = e.source(t).Token(context.Background())
	te := wantKind(t, err, KindInvalidClient, false)
	if strings.Contains(te.Error(), "wrong-secret") || !strings.Contains(te.Error(), "AADSTS7000215") {
		t.Errorf("error text %q", te)
	}
}

func TestRefreshTokenRotationSavedBeforeUse(t *testing.T) {
	e := newEnv(t, oauthtest.Options{StrictRotation: true}, GrantRefreshToken)
	seeded := e.seed(t)
	var inHook string
	e.srv.OnIssued(func(string) {}) // the response is written before the file is checked below
	s := e.source(t)
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The access token is handed out only after the new refresh token is
	// on disk.
	inHook = storedRefresh(t, e.cfg.StoreFile)
	live := e.srv.LiveRefreshTokens()
	if inHook == seeded || len(live) != 1 || live[0] != inHook {
		t.Fatalf("stored %q, seeded %q, live %q", inHook, seeded, live)
	}
	if !e.srv.Valid(e.srv.Mailbox(), tok) {
		t.Fatal("token not valid")
	}
	fi, _ := os.Stat(e.cfg.StoreFile)
	di, _ := os.Stat(filepath.Dir(e.cfg.StoreFile))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("modes file %v dir %v", fi.Mode(), di.Mode())
	}
	// A restart reads the rotated one.
	s2 := e.source(t)
	if _, err := s2.Token(context.Background()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if e.srv.Rotations() != 2 {
		t.Errorf("rotations = %d", e.srv.Rotations())
	}
}

// A token close to expiry is still handed out at once while one refresh
// runs in the background; callers without a valid token all wait for the
// same single refresh.
func TestRefreshDoesNotStall(t *testing.T) {
	e := newEnv(t, oauthtest.Options{Lifetime: time.Hour}, GrantClientCredentials)
	s := e.source(t)
	first, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release := e.srv.Hold()
	defer release()
	e.clk.add(time.Hour - 4*time.Minute) // inside the early window (5m)
	for i := 0; i < 20; i++ {
		tok, err := s.Token(context.Background())
		if err != nil || tok != first {
			t.Fatalf("near expiry: %v, same token %v", err, tok == first)
		}
	}
	waitFor(t, func() bool { return e.srv.Waiting() == 1 })
	// Expired now: every caller waits for the one refresh in flight.
	e.clk.add(4 * time.Minute)
	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], _ = s.Token(context.Background())
		}()
	}
	release()
	wg.Wait()
	for _, tok := range toks {
		if tok == "" || tok == first || tok != toks[0] {
			t.Fatalf("tokens after refresh: %q", toks)
		}
	}
	if n := e.srv.Issued("client_credentials"); n != 2 {
		t.Errorf("issued %d tokens, want 2 (one refresh)", n)
	}
	if e.srv.Waiting() != 1 {
		t.Errorf("%d requests reached the endpoint while one was in flight", e.srv.Waiting())
	}
}

func TestEndpointDownThenBack(t *testing.T) {
	e := newEnv(t, oauthtest.Options{}, GrantClientCredentials)
	s := e.source(t)
	e.srv.Stop()
	_, err := s.Token(context.Background())
	wantKind(t, err, KindUnreachable, true)
	e.srv.Start()
	e.clk.add(time.Second)
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatalf("after the endpoint returned: %v", err)
	}
	e.srv.SetFault(oauthtest.Fault{Status: 503, Code: "temporarily_unavailable"})
	_, err = s.Check(context.Background())
	wantKind(t, err, KindServerError, true)
	if got := e.res.list(); strings.Join(got, ",") != "unreachable,ok,server_error" {
		t.Errorf("observed %q", got)
	}
}

// After a failure no new request is made for RetryAfter.
func TestRetryAfterFailure(t *testing.T) {
	e := newEnv(t, oauthtest.Options{}, GrantClientCredentials)
	e.cfg.RetryAfter = time.Minute
	s := e.source(t)
	e.srv.SetFault(oauthtest.Fault{Status: 500, Code: "server_error"})
	for i := 0; i < 5; i++ {
		_, err := s.Token(context.Background())
		wantKind(t, err, KindServerError, true)
	}
	if n := len(e.res.list()); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	e.srv.SetFault(oauthtest.Fault{})
	e.clk.add(time.Minute)
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestErrorKinds(t *testing.T) {
	e := newEnv(t, oauthtest.Options{}, GrantRefreshToken)
	e.seed(t)
	e.srv.SetFault(oauthtest.Fault{Status: 400, Code: "invalid_grant",
		Description: "AADSTS65001: The user or administrator has not consented to use the application."})
	_, err := e.source(t).Token(context.Background())
	wantKind(t, err, KindConsentRequired, false)

	e.srv.SetFault(oauthtest.Fault{})
	e.srv.RevokeAll()
	_, err = e.source(t).Token(context.Background())
	te := wantKind(t, err, KindInvalidGrant, false)
	if !strings.Contains(te.Hint(), "relayd oauth2 login") {
		t.Errorf("hint %q", te.Hint())
	}

	os.Remove(e.cfg.StoreFile)
	_, err = e.source(t).Token(context.Background())
	te = wantKind(t, err, KindNoRefreshToken, false)
	if !strings.Contains(te.Hint(), "relayd oauth2 login") {
		t.Errorf("hint %q", te.Hint())
	}
}

func TestJWTServiceAccount(t *testing.T) {
	e := newEnv(t, oauthtest.Options{Mailbox: "sender@example.com"}, GrantJWT)
	e.cfg.KeyFile = e.srv.ServiceAccountKey(t, "relayd@project.iam.gserviceaccount.com")
	e.cfg.TokenURL = "" // from the key file
	e.cfg.Scopes = []string{"https://mail.google.com/"}
	e.cfg.Subject = "sender@example.com"
	tok, err := e.source(t).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !e.srv.Valid("sender@example.com", tok) {
		t.Fatal("token not valid")
	}
	e.cfg.Subject = "other@example.com" // no delegation for that one
	_, err = e.source(t).Token(context.Background())
	te := wantKind(t, err, KindConsentRequired, false)
	if !strings.Contains(te.Hint(), "Domain-wide delegation") {
		t.Errorf("hint %q", te.Hint())
	}
}

func TestDeviceLogin(t *testing.T) {
	e := newEnv(t, oauthtest.Options{}, GrantRefreshToken)
	e.cfg.ClientSecret = "" // a public client, as Microsoft's device flow apps are
	s := e.source(t)
	var prompt Prompt
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Login(ctx, func(p Prompt) {
		prompt = p
		if !e.srv.Approve(p.UserCode) {
			t.Errorf("no device waiting for %q", p.UserCode)
		}
	})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if prompt.UserCode == "" || !strings.HasPrefix(prompt.VerificationURI, "https://") {
		t.Errorf("prompt %+v", prompt)
	}
	rt := storedRefresh(t, e.cfg.StoreFile)
	if live := e.srv.LiveRefreshTokens(); len(live) != 1 || live[0] != rt {
		t.Fatalf("stored %q, live %q", rt, live)
	}
	tok, err := e.source(t).Token(context.Background())
	if err != nil || !e.srv.Valid(e.srv.Mailbox(), tok) {
		t.Fatalf("token from the stored refresh token: %v", err)
	}
}

func TestFileName(t *testing.T) {
	for in, want := range map[string]string{
		"relay@example.com": "relay@example.com.json",
		"../../etc/passwd":  "_.._.._etc_passwd.json",
		"":                  "_.json",
	} {
		if got := FileName(in); got != want {
			t.Errorf("FileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition never became true")
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// Two users of one store file (a reload's new Source beside the old one,
// relayd check beside the daemon) never refresh with a replaced token.
func TestStoreSharedBySources(t *testing.T) {
	e := newEnv(t, oauthtest.Options{StrictRotation: true}, GrantRefreshToken)
	e.seed(t)
	a, b := e.source(t), e.source(t)
	for i, s := range []*Source{a, b, a, b} {
		if _, err := s.Check(context.Background()); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = []*Source{a, b}[i%2].Check(context.Background())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent refresh %d: %v", i, err)
		}
	}
}

// With grant refresh_token a refresh runs KeepAlive after the last one even
// when no token is asked for, so an unused refresh token does not expire;
// Close stops it.
func TestKeepAliveRefresh(t *testing.T) {
	e := newEnv(t, oauthtest.Options{}, GrantRefreshToken)
	e.seed(t)
	e.cfg.KeepAlive = 50 * time.Millisecond
	s := e.source(t)
	// No Token call at all: the first keep-alive is armed by New.
	waitFor(t, func() bool { return e.srv.Issued("refresh_token") >= 3 })
	s.Close()
	n := e.srv.Issued("refresh_token")
	time.Sleep(200 * time.Millisecond)
	if m := e.srv.Issued("refresh_token"); m > n+1 {
		t.Errorf("%d refreshes after Close", m-n)
	}
}
