package upstream

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"relayd/internal/smtptest"
)

// fakeTokens is a TokenSource handing out tok (or err).
type fakeTokens struct {
	mu       sync.Mutex
	tok      string
	err      error
	fresh    bool
	rejected []string
	calls    int
}

func (f *fakeTokens) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.tok, f.err
}

func (f *fakeTokens) Reject(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected = append(f.rejected, tok)
	return f.fresh
}

// tempErr is a token source failure that says it may clear by itself.
type tempErr struct{}

func (tempErr) Error() string   { return "token endpoint unreachable" }
func (tempErr) Temporary() bool { return true }
func (tempErr) Hint() string    { return "is the token endpoint up?" }

// bigToken is a 2.5 KB bearer token: base64 of the XOAUTH2 response is
// far over the 512-octet command line (RFC 5321 §4.5.3.1.4).
var bigToken = "ya29." + strings.Repeat("A1b2C3d4E5", 250)

// oauthServer is a smarthost that accepts valid for user testUser.
func oauthServer(t *testing.T, valid *string, mu *sync.Mutex) *smtptest.Server {
	return smtptest.New(t, smtptest.Options{RequireTLS: true, OAuth: func(user, tok string) bool {
		mu.Lock()
		defer mu.Unlock()
		return user == testUser && tok == *valid
	}})
}

func TestOAuthMechanismsDeliver(t *testing.T) {
	for _, mech := range []string{AuthXOAuth2, AuthOAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			var mu sync.Mutex
			valid := bigToken
			s := oauthServer(t, &valid, &mu)
			src := &fakeTokens{tok: bigToken}
			c, logs := newClient(t, s, func(cfg *Config) { cfg.Auth, cfg.Tokens, cfg.Password = mech, src, "" })
			if _, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if got := s.Messages(); len(got) != 1 || got[0].AuthUser != testUser {
				t.Fatalf("messages = %+v", got)
			}
			if strings.Contains(logs.String(), bigToken[:40]) {
				t.Errorf("token in logs:\n%s", logs)
			}
		})
	}
}

func TestOAuthErrorChallenge(t *testing.T) {
	for _, mech := range []string{AuthXOAuth2, AuthOAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			var mu sync.Mutex
			valid := "the-valid-token"
			s := oauthServer(t, &valid, &mu)
			src := &fakeTokens{tok: "a-revoked-token-0123456789", fresh: true}
			clock := &fakeClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
			c, logs := newClient(t, s, func(cfg *Config) {
				cfg.Auth, cfg.Tokens, cfg.Password = mech, src, ""
				cfg.IdleKeep, cfg.Clock = -1, clock.Now
			})
			// The second attempt is held by the AUTH backoff (a fresh
			// token refused: the credentials are wrong) and carries the
			// first refusal's diagnosis without logging in again.
			for i := 0; i < 2; i++ {
				_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
				e := wantErr(t, err, StageAuth)
				if e.Code != 535 || !e.Temporary {
					t.Fatalf("err = %v (code %d, temporary %v), want a temporary 535", e, e.Code, e.Temporary)
				}
				if !strings.Contains(e.Hint, `"`+smtptest.ErrorStatus+`"`) || !strings.Contains(e.Hint, "Set-CASMailbox") {
					t.Errorf("hint = %q, want the JSON status and the fix", e.Hint)
				}
				if strings.Contains(e.Error(), src.tok) {
					t.Errorf("token in error: %v", e)
				}
			}
			if n := strings.Count(logs.String(), "freshly issued OAuth2 token"); n != 1 {
				t.Errorf("logged %d times, want once:\n%s", n, logs)
			}
			if len(src.rejected) != 1 || src.rejected[0] != src.tok {
				t.Errorf("rejected = %q", src.rejected)
			}
			if strings.Contains(logs.String(), src.tok) {
				t.Errorf("token in logs:\n%s", logs)
			}
			// The credentials are fixed: the next login succeeds and a
			// later refusal is logged again.
			mu.Lock()
			valid = src.tok
			mu.Unlock()
			clock.Add(time.Hour) // past the backoff
			if _, err := c.Deliver(context.Background(), delivery("m2", "b@example.net")); err != nil {
				t.Fatalf("Deliver after fix: %v", err)
			}
			mu.Lock()
			valid = "another"
			mu.Unlock()
			c.Deliver(context.Background(), delivery("m3", "b@example.net"))
			if n := strings.Count(logs.String(), "freshly issued OAuth2 token"); n != 2 {
				t.Errorf("logged %d times after a success in between, want 2", n)
			}
		})
	}
}

// A stale token refused by the smarthost is dropped by the source (Reject
// returns false) and the hint says a new one comes next time.
func TestOAuthStaleTokenRejected(t *testing.T) {
	var mu sync.Mutex
	valid := "new"
	s := oauthServer(t, &valid, &mu)
	src := &fakeTokens{tok: "old-token"}
	c, logs := newClient(t, s, func(cfg *Config) { cfg.Auth, cfg.Tokens, cfg.Password = AuthXOAuth2, src, "" })
	_, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageAuth)
	if !strings.Contains(e.Hint, "new token") {
		t.Errorf("hint = %q", e.Hint)
	}
	if strings.Contains(logs.String(), "freshly issued") {
		t.Errorf("a stale token was reported as a configuration problem:\n%s", logs)
	}
}

// The token endpoint being down is a session-level AUTH failure that sends
// nothing to the smarthost: the queue defers, never bounces.
func TestOAuthTokenSourceFails(t *testing.T) {
	var mu sync.Mutex
	valid := "x"
	s := oauthServer(t, &valid, &mu)
	src := &fakeTokens{err: tempErr{}}
	c, _ := newClient(t, s, func(cfg *Config) { cfg.Auth, cfg.Tokens, cfg.Password = AuthOAuthBearer, src, "" })
	out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
	e := wantErr(t, err, StageAuth)
	if !e.Temporary || e.Hint != "is the token endpoint up?" || !errors.Is(err, tempErr{}) {
		t.Errorf("err = %v (temporary %v, hint %q)", e, e.Temporary, e.Hint)
	}
	if len(out.Rcpts) != 0 {
		t.Errorf("recipient results %v for a session failure", out.Rcpts)
	}
	if s.AuthAttempts() != 0 {
		t.Errorf("AUTH sent without a token")
	}
}

func TestAuthForcedMechanism(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{RequireTLS: true, Users: map[string]string{testUser: testPass}, AuthMechs: []string{sasl.Plain, sasl.Login}})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.Auth = AuthLogin })
	if _, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); err != nil {
		t.Fatalf("auth = login: %v", err)
	}
	c2, _ := newClient(t, s, func(cfg *Config) { cfg.Auth, cfg.Tokens = AuthXOAuth2, &fakeTokens{tok: "t"} })
	_, err := c2.Deliver(context.Background(), delivery("m2", "b@example.net"))
	if e := wantErr(t, err, StageAuth); !strings.Contains(e.Error(), "does not offer AUTH XOAUTH2") {
		t.Errorf("err = %v", e)
	}
	if s.AuthAttempts() != 1 {
		t.Errorf("AuthAttempts = %d, want 1", s.AuthAttempts())
	}
}

func TestAuthConfigChecked(t *testing.T) {
	for _, cfg := range []Config{
		{Address: "127.0.0.1:25", Auth: "cram-md5", Username: "u", Password: "p"},
		{Address: "127.0.0.1:25", Auth: AuthXOAuth2, Username: "u"},
		{Address: "127.0.0.1:25", Auth: AuthOAuthBearer, Tokens: &fakeTokens{}},
		{Address: "127.0.0.1:25", Auth: AuthPlain},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(Config{Address: "127.0.0.1:25", Auth: AuthXOAuth2, Username: "u", Tokens: &fakeTokens{}}); err != nil {
		t.Errorf("xoauth2 without password: %v", err)
	}
}

// gatedTokens blocks Token until gate is closed (a slow token endpoint).
type gatedTokens struct {
	fakeTokens
	gate    chan struct{}
	waiting chan struct{} // receives when a Token call starts waiting
}

func (g *gatedTokens) Token(ctx context.Context) (string, error) {
	g.waiting <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return g.fakeTokens.Token(ctx)
}

// A delivery on an authenticated connection goes on while another one
// waits for a token for its new connection.
func TestOAuthWaitDoesNotStallOthers(t *testing.T) {
	var mu sync.Mutex
	valid := "tok"
	s := oauthServer(t, &valid, &mu)
	g := &gatedTokens{fakeTokens: fakeTokens{tok: "tok"}, gate: make(chan struct{}), waiting: make(chan struct{}, 4)}
	c, _ := newClient(t, s, func(cfg *Config) { cfg.Auth, cfg.Tokens, cfg.Password = AuthXOAuth2, g, "" })
	first := make(chan error, 1)
	go func() { _, err := c.Deliver(context.Background(), delivery("m0", "b@example.net")); first <- err }()
	<-g.waiting
	close(g.gate) // the first connection gets its token
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The pooled connection is authenticated; a new gate holds any new one.
	g.gate = make(chan struct{})
	defer close(g.gate)
	blocked := make(chan error, 1)
	go func() { _, err := c.Deliver(context.Background(), delivery("m1", "b@example.net")); blocked <- err }()
	go func() { _, err := c.Deliver(context.Background(), delivery("m2", "b@example.net")); blocked <- err }()
	<-g.waiting // one delivery dials and waits for a token...
	select {    // ...while the other completes on the pooled connection
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a delivery on an authenticated connection waited for the token")
	}
	if n := len(s.Messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}
