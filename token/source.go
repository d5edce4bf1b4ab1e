// Package token is the OAuth2 token source of the smarthost login
// (XOAUTH2 and OAUTHBEARER): it gets access tokens from the provider's token
// endpoint with golang.org/x/oauth2 and hands them to upstream.
//
// Grants (RFC 6749): "client_credentials" (§4.4; Microsoft 365's
// SMTP.SendAsApp route), "refresh_token" (§6; the refresh token comes from
// the device authorization grant of RFC 8628, run once by relayd oauth2
// login, see Login) and "jwt" (RFC 7523; a Google service account with
// domain-wide delegation acting for a mailbox).
//
// Invariants:
//   - Access tokens live in memory only. A token is handed out until shortly
//     before it expires; a refresh starts in the background when it comes
//     close to expiry, so deliveries that find a valid token never wait.
//     Only when there is no valid token does Token wait, for the one refresh
//     in flight: at most one request to the token endpoint runs at a time.
//   - A refresh token that the provider rotates is written to the store file
//     (0600, atomically, file and directory fsynced) before the access token
//     that came with it is handed out, and before it is used for a refresh
//     itself: after a crash at any point the file holds a refresh token
//     that the provider has issued and that relayd has not yet replaced.
//   - Every HTTP request has a deadline (Config.Timeout); the token
//     endpoint's TLS is verified against Config.RootCAs (nil: system roots).
//   - After a failed refresh no new one starts for RetryAfter, so a token
//     endpoint that is down is not hammered by every delivery.
//   - Errors are *Error: they carry the provider's error code and
//     description, never a token, a secret or a response body; nothing here
//     logs a token or a secret.
package token

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Grants of Config.Grant.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
	GrantJWT               = "jwt"
	// GrantDevice is the device authorization grant (RFC 8628) of Login;
	// it is not a value of Config.Grant.
	GrantDevice = "device_code"
)

// Config configures a Source. Zero fields take the defaults noted.
type Config struct {
	Grant         string
	TokenURL      string // jwt: default the key file's token_uri
	DeviceAuthURL string // for Login
	ClientID      string
	ClientSecret  string
	Scopes        []string
	// StoreFile holds the refresh token (grant refresh_token), e.g.
	// state_dir/oauth2/NAME.json.
	StoreFile string
	// KeyFile is the Google service account key (JSON; grant jwt) and
	// Subject the mailbox it acts for.
	KeyFile string
	Subject string
	// RootCAs verifies the token endpoint; nil: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds each HTTP request (default 30s).
	Timeout time.Duration
	// RetryAfter is the pause after a failed refresh (default 5s).
	RetryAfter time.Duration
	// KeepAlive (grant refresh_token) refreshes this long after the last
	// refresh even when no mail needs a token, so that the refresh token
	// does not expire unused (Microsoft: after 90 days; default 24h).
	KeepAlive time.Duration
	// Observe is told the result of every refresh: "ok" or a Kind.
	Observe func(result string)
	Logger  *slog.Logger     // default slog.Default()
	Clock   func() time.Time // default time.Now
}

// Source hands out access tokens; it is safe for concurrent use and
// implements upstream.TokenSource.
type Source struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	key    *serviceKey // grant jwt

	mu         sync.Mutex
	tok        *oauth2.Token // current access token, nil if none
	obtained   time.Time     // when tok was received
	refreshing chan struct{} // closed when the refresh in flight ends
	lastErr    error         // of the last refresh, nil after a success
	failedAt   time.Time
	unsaved    string      // a rotated refresh token not yet saved (a write failed)
	keep       *time.Timer // refresh_token: the next keep-alive refresh
	closed     bool
}

// New checks cfg (and reads the jwt key file) without contacting the token
// endpoint.
func New(cfg Config) (*Source, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Observe == nil {
		cfg.Observe = func(string) {}
	}
	s := &Source{cfg: cfg, log: cfg.Logger}
	switch cfg.Grant {
	case GrantClientCredentials:
		if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
			return nil, errors.New("token: client_credentials needs token_url, client_id and a client secret")
		}
	case GrantRefreshToken:
		if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.StoreFile == "" {
			return nil, errors.New("token: refresh_token needs token_url, client_id and a store file")
		}
	case GrantJWT:
		k, err := loadServiceKey(cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		s.key = k
		if s.cfg.TokenURL == "" {
			s.cfg.TokenURL = k.TokenURI
		}
		if s.cfg.TokenURL == "" {
			return nil, fmt.Errorf("token: %s has no token_uri: set oauth2.token_url", cfg.KeyFile)
		}
	default:
		return nil, fmt.Errorf("token: grant %q: want client_credentials, refresh_token or jwt", cfg.Grant)
	}
	s.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: cfg.Timeout,
			MaxIdleConns:        2,
			IdleConnTimeout:     time.Minute,
		},
		// A token endpoint does not redirect; refusing keeps the secret
		// in the form from being re-posted elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if cfg.Grant == GrantRefreshToken {
		// Also when no mail ever asks for a token (Close stops it).
		s.keep = time.AfterFunc(cfg.KeepAlive, s.keepAlive)
	}
	return s, nil
}

// margins of a token of the given lifetime: it is handed out while more
// than usable remains, and a background refresh starts when less than
// early remains.
func margins(lifetime time.Duration) (usable, early time.Duration) {
	usable = min(30*time.Second, lifetime/10)
	early = min(5*time.Minute, lifetime/4)
	return usable, early
}

// Token returns a valid access token, fetching one if needed. It waits only
// when no valid token is at hand.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	now := s.cfg.Clock()
	if s.tok != nil {
		usable, early := margins(s.tok.Expiry.Sub(s.obtained))
		left := s.tok.Expiry.Sub(now)
		if left > usable {
			if left < early {
				s.startRefresh(now)
			}
			tok := s.tok.AccessToken
			s.mu.Unlock()
			return tok, nil
		}
	}
	if s.refreshing == nil && s.lastErr != nil && now.Sub(s.failedAt) < s.cfg.RetryAfter {
		err := s.lastErr
		s.mu.Unlock()
		return "", err
	}
	s.startRefresh(now)
	wait := s.refreshing
	s.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return "", &Error{Kind: KindUnreachable, Err: fmt.Errorf("waiting for the token endpoint: %w", ctx.Err())}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.Expiry.After(s.cfg.Clock()) {
		return s.tok.AccessToken, nil
	}
	if s.lastErr != nil {
		return "", s.lastErr
	}
	return "", &Error{Kind: KindRejected, Err: errors.New("the token endpoint returned an expired token")}
}

// startRefresh starts the refresh unless one is in flight or one failed
// less than RetryAfter ago. s.mu is held.
func (s *Source) startRefresh(now time.Time) {
	if s.refreshing != nil || (s.lastErr != nil && now.Sub(s.failedAt) < s.cfg.RetryAfter) {
		return
	}
	done := make(chan struct{})
	s.refreshing = done
	go func() {
		// Detached from the caller: a delivery giving up must not waste
		// a refresh others wait for. The HTTP client bounds each request.
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Timeout)
		tok, err := s.fetch(ctx)
		cancel()
		s.mu.Lock()
		now := s.cfg.Clock()
		if err != nil {
			s.lastErr, s.failedAt = err, now
		} else {
			if tok.Expiry.IsZero() {
				tok.Expiry = now.Add(time.Hour) // no expires_in: refresh hourly
			}
			s.tok, s.obtained, s.lastErr = tok, now, nil
		}
		if s.cfg.Grant == GrantRefreshToken && !s.closed {
			if s.keep != nil {
				s.keep.Stop()
			}
			s.keep = time.AfterFunc(s.cfg.KeepAlive, s.keepAlive)
		}
		s.refreshing = nil
		s.mu.Unlock()
		s.report(tok, err)
		close(done)
	}()
}

// keepAlive refreshes so that an unused refresh token does not expire.
func (s *Source) keepAlive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.lastErr = nil // a keep-alive is not held back by an old failure
		s.startRefresh(s.cfg.Clock())
	}
}

// Close stops the keep-alive refreshes; a refresh in flight completes.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.keep != nil {
		s.keep.Stop()
	}
	return nil
}

// Reject implements upstream.TokenSource: the smarthost refused token. A
// token received less than a minute ago is kept (a new one would be refused
// just the same: the permissions are wrong) and reported fresh; an older
// one is dropped so the next Token fetches another.
func (s *Source) Reject(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil || s.tok.AccessToken != token {
		return false // already replaced
	}
	if s.cfg.Clock().Sub(s.obtained) < time.Minute {
		return true
	}
	s.tok = nil
	return false
}

// Check fetches a new token now, bypassing the cache (relayd check).
func (s *Source) Check(ctx context.Context) (string, error) {
	tok, err := s.fetch(ctx)
	s.report(tok, err)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.tok, s.obtained, s.lastErr = tok, s.cfg.Clock(), nil
	s.mu.Unlock()
	return tok.AccessToken, nil
}

// fetch asks the token endpoint for a new access token. Only one runs at a
// time (startRefresh, or Check outside the daemon).
func (s *Source) fetch(ctx context.Context) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	var tok *oauth2.Token
	var err error
	switch s.cfg.Grant {
	case GrantClientCredentials:
		cc := &clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret,
			TokenURL: s.cfg.TokenURL, Scopes: s.cfg.Scopes, AuthStyle: oauth2.AuthStyleInParams}
		tok, err = cc.Token(ctx)
	case GrantJWT:
		tok, err = s.key.config(s.cfg).TokenSource(ctx).Token()
	case GrantRefreshToken:
		return s.fetchRefresh(ctx)
	}
	if err != nil {
		return nil, classify(s.cfg.Grant, err)
	}
	return tok, nil
}

// oauthConfig is the x/oauth2 configuration of the refresh_token grant and
// of Login.
func (s *Source) oauthConfig() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.cfg.ClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: s.cfg.TokenURL, DeviceAuthURL: s.cfg.DeviceAuthURL,
			AuthStyle: oauth2.AuthStyleInParams},
		Scopes: s.cfg.Scopes,
	}
}

// fetchRefresh runs the refresh_token grant. The store file is locked
// (flock) from reading the refresh token to saving its successor, and read
// again every time, so that two users of one file (a reload's new Source
// beside the old one, relayd check or relayd oauth2 login beside the
// daemon) never refresh with a token the other has already replaced.
func (s *Source) fetchRefresh(ctx context.Context) (*oauth2.Token, error) {
	unlock, err := lockStore(s.cfg.StoreFile)
	if err != nil {
		return nil, &Error{Kind: KindLocal, Err: err, hint: "cannot lock the refresh token file: check the owner (the relayd user) of " + filepath.Dir(s.cfg.StoreFile)}
	}
	defer unlock()
	s.mu.Lock()
	unsaved := s.unsaved
	s.mu.Unlock()
	if unsaved != "" {
		// Never used before it is on disk: save it first.
		if err := s.save(unsaved); err != nil {
			return nil, s.saveError(err)
		}
		s.mu.Lock()
		s.unsaved = ""
		s.mu.Unlock()
	}
	rt, err := loadRefresh(s.cfg.StoreFile)
	if err != nil {
		return nil, err
	}
	tok, err := s.oauthConfig().TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		return nil, classify(s.cfg.Grant, err)
	}
	if tok.RefreshToken != "" && tok.RefreshToken != rt {
		// Rotated (Microsoft does it on every refresh): saved before the
		// new access token is handed out or the new refresh token used.
		if err := s.save(tok.RefreshToken); err != nil {
			// Kept in memory only to be saved at the next try (the old
			// one on disk may be dead); not used until then.
			s.mu.Lock()
			s.unsaved = tok.RefreshToken
			s.mu.Unlock()
			return nil, s.saveError(err)
		}
		s.log.Info("OAuth2 refresh token rotated and saved", "file", s.cfg.StoreFile)
	}
	return tok, nil
}

func (s *Source) saveError(err error) *Error {
	return &Error{Kind: KindLocal, Err: fmt.Errorf("saving the rotated refresh token: %w", err),
		hint: "the refresh token file cannot be written: check the owner (the relayd user) and free space of " + s.cfg.StoreFile}
}

func (s *Source) save(refresh string) error {
	return saveRefresh(s.cfg.StoreFile, stored{RefreshToken: refresh, ClientID: s.cfg.ClientID,
		TokenURL: s.cfg.TokenURL, Updated: s.cfg.Clock().UTC()})
}

// LogRefresh is the message of the log line of every refresh, with
// result = "ok" or the Kind of the failure; metrics counts these lines.
const LogRefresh = "oauth2 token refresh"

// report logs and observes the result of one refresh.
func (s *Source) report(tok *oauth2.Token, err error) {
	if err != nil {
		kind := string(kindOf(err))
		s.log.Warn(LogRefresh, "result", kind, "grant", s.cfg.Grant, "err", err.Error(), "fix", hintOf(err))
		s.cfg.Observe(kind)
		return
	}
	s.log.Info(LogRefresh, "result", "ok", "grant", s.cfg.Grant, "expires", tok.Expiry.UTC().Format(time.RFC3339))
	s.cfg.Observe("ok")
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnreachable
}

func hintOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.hint
	}
	return ""
}
