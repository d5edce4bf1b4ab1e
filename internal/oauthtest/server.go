// Package oauthtest is an OAuth2 token endpoint for tests: HTTPS on
// 127.0.0.1:0 with a certificate from a test CA, implementing the grants
// relayd uses: client_credentials (RFC 6749 §4.4), refresh_token with
// rotation (§6), the device authorization grant (RFC 8628) and the JWT
// bearer grant of a Google-style service account (RFC 7523).
//
// Invariants:
//   - Access tokens are random, TokenLen characters long and valid for
//     Lifetime; Valid says whether one is currently valid for a mailbox.
//   - Every refresh rotates the refresh token; with StrictRotation the old
//     one is dead at once (the harshest provider), otherwise when the new
//     one is first used.
//   - Stop/Start keep the port (the endpoint "goes down" and returns);
//     SetFault scripts error answers. No package-level state.
package oauthtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// Options configure a Server.
type Options struct {
	ClientID     string // default "relayd-test-client"
	ClientSecret string // default a random string; "" not allowed
	// Mailbox is the user the tokens are for (default "relay@example.com").
	Mailbox string
	// Lifetime of access tokens (default 1h); TokenLen their length
	// (default 1500).
	Lifetime time.Duration
	TokenLen int
	// StrictRotation kills a refresh token as soon as it was used.
	StrictRotation bool
}

// Fault scripts the answer to the next token requests.
type Fault struct {
	Status      int    // HTTP status; 0 = no fault
	Code        string // RFC 6749 §5.2 error
	Description string
}

// Server is a running token endpoint.
type Server struct {
	t    testing.TB
	opts Options
	ca   *smtptest.CA
	cert tls.Certificate
	addr string
	srv  *http.Server
	key  *rsa.PrivateKey // of the service account

	mu       sync.Mutex
	ln       net.Listener
	access   map[string]time.Time // access token -> expiry
	refresh  map[string]string    // live refresh token -> the one it replaced ("" if none)
	devices  map[string]*device   // device_code -> state
	fault    Fault
	counts   map[string]int // grant -> successful token responses
	rotated  int
	onIssued func(grant string)
	gate     chan struct{} // token requests wait until it is closed
	waiting  int           // requests waiting at the gate
	spent    []string      // refresh tokens no longer live
}

type device struct {
	userCode string
	approved bool
}

// New starts a token endpoint; t.Cleanup stops it.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = "relayd-test-client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "client-secret-" + random(24)
	}
	if opts.Mailbox == "" {
		opts.Mailbox = "relay@example.com"
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = time.Hour
	}
	if opts.TokenLen == 0 {
		opts.TokenLen = 1500
	}
	s := &Server{t: t, opts: opts, ca: smtptest.NewCA(t),
		access: map[string]time.Time{}, refresh: map[string]string{},
		devices: map[string]*device{}, counts: map[string]int{}}
	s.cert = s.ca.Leaf(t, "localhost", "127.0.0.1")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /devicecode", s.deviceCode)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oauthtest: listen: %v", err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(func() { s.Stop(); s.srv.Close() })
	return s
}

func (s *Server) serve(l net.Listener) {
	s.mu.Lock()
	s.ln = l
	s.mu.Unlock()
	tl := tls.NewListener(l, s.srv.TLSConfig)
	go func() { _ = s.srv.Serve(tl) }()
}

// URL is the base URL; the token endpoint is URL()+"/token" and the device
// authorization endpoint URL()+"/devicecode".
func (s *Server) URL() string { return "https://" + s.addr }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL() + "/token" }

// DeviceAuthURL is the device authorization endpoint.
func (s *Server) DeviceAuthURL() string { return s.URL() + "/devicecode" }

// CA signed the endpoint's certificate.
func (s *Server) CA() *smtptest.CA { return s.ca }

// ClientID and ClientSecret are the accepted client credentials.
func (s *Server) ClientID() string     { return s.opts.ClientID }
func (s *Server) ClientSecret() string { return s.opts.ClientSecret }

// Mailbox is the user tokens are valid for.
func (s *Server) Mailbox() string { return s.opts.Mailbox }

// Valid reports whether tok is a currently valid access token for user:
// the test smarthost's check (smtptest.Options.OAuth).
func (s *Server) Valid(user, tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[tok]
	return ok && user == s.opts.Mailbox && time.Now().Before(exp)
}

// SetLifetime changes the lifetime of tokens issued from now on.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	s.opts.Lifetime = d
	s.mu.Unlock()
}

// SetFault scripts the answers to every token request until reset with
// the zero Fault.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Hold makes token requests wait until the returned function is called.
func (s *Server) Hold() (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate, s.waiting = gate, 0
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.gate = nil
			s.mu.Unlock()
			close(gate)
		})
	}
}

// Waiting is the number of token requests that reached the gate of Hold.
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// OnIssued is called (outside the lock) after each successful token
// response was written, with the grant type.
func (s *Server) OnIssued(f func(grant string)) {
	s.mu.Lock()
	s.onIssued = f
	s.mu.Unlock()
}

// Issued is the number of successful token responses for a grant type
// ("client_credentials", "refresh_token", "device_code", "jwt").
func (s *Server) Issued(grant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[grant]
}

// Rotations is the number of refresh tokens replaced by a new one.
func (s *Server) Rotations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotated
}

// SeedRefreshToken makes a live refresh token, as a completed sign-in
// would leave.
func (s *Server) SeedRefreshToken() string {
	rt := "rt-" + random(40)
	s.mu.Lock()
	s.refresh[rt] = ""
	s.mu.Unlock()
	return rt
}

// LiveRefreshTokens lists the refresh tokens the server accepts.
func (s *Server) LiveRefreshTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for rt := range s.refresh {
		out = append(out, rt)
	}
	return out
}

// Secrets lists every secret the server knows: the client secret and every
// access and refresh token it ever issued or accepted (to prove none reaches
// a log).
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{s.opts.ClientSecret}
	for t := range s.access {
		out = append(out, t)
	}
	for rt, prev := range s.refresh {
		out = append(out, rt)
		if prev != "" {
			out = append(out, prev)
		}
	}
	out = append(out, s.spent...)
	return out
}

// RevokeAll kills every refresh token (the user changed the password).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	for rt := range s.refresh {
		s.spent = append(s.spent, rt)
	}
	s.refresh = map[string]string{}
	s.mu.Unlock()
}

// Approve approves the device whose user code is code (the user signed in
// in a browser); it reports whether such a device was waiting.
func (s *Server) Approve(code string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.userCode == code {
			d.approved = true
			return true
		}
	}
	return false
}

// Stop closes the listener: requests fail with connection refused.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	s.srv.SetKeepAlivesEnabled(false)
}

// Start listens again on the same address after Stop.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	running := s.ln != nil
	s.mu.Unlock()
	if running {
		return
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("oauthtest: relisten on %s: %v", s.addr, err)
	}
	s.srv.SetKeepAlivesEnabled(true)
	s.serve(l)
}

// ServiceAccountKey writes a Google-style service account key file (JSON,
// mode 0600) for email, whose token_uri is this server, and returns its
// path.
func (s *Server) ServiceAccountKey(t testing.TB, email string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "relayd-test", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": email, "client_id": "1234567890", "token_uri": s.TokenURL(),
	})
	path := filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// oauthError writes an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) clientOK(r *http.Request, needSecret bool) bool {
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	if id != s.opts.ClientID {
		return false
	}
	return secret == s.opts.ClientSecret || (!needSecret && secret == "")
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "bad form")
		return
	}
	s.mu.Lock()
	gate := s.gate
	if gate != nil {
		s.waiting++
	}
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	if f.Status != 0 {
		oauthError(w, f.Status, f.Code, f.Description)
		return
	}
	grant := r.PostFormValue("grant_type")
	var label string
	switch grant {
	case "client_credentials":
		if !s.clientOK(r, true) {
			oauthError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
			return
		}
		label = "client_credentials"
	case "refresh_token":
		if !s.clientOK(r, false) {
			oauthError(w, 401, "invalid_client", "unknown client")
			return
		}
		rt := r.PostFormValue("refresh_token")
		s.mu.Lock()
		prev, live := s.refresh[rt]
		if live {
			// rt is used: its predecessor dies; with strict rotation rt
			// dies too, otherwise when its successor is first used.
			if prev != "" {
				delete(s.refresh, prev)
				s.spent = append(s.spent, prev)
			}
			if s.opts.StrictRotation {
				delete(s.refresh, rt)
				s.spent = append(s.spent, rt)
			}
			s.rotated++
		}
		s.mu.Unlock()
		if !live {
			oauthError(w, 400, "invalid_grant", "AADSTS70008: The provided refresh token has expired or was revoked.")
			return
		}
		s.issue(w, "refresh_token", rt)
		return
	case "urn:ietf:params:oauth:grant-type:device_code":
		if !s.clientOK(r, false) {
			oauthError(w, 401, "invalid_client", "unknown client")
			return
		}
		s.mu.Lock()
		d, ok := s.devices[r.PostFormValue("device_code")]
		approved := ok && d.approved
		if approved {
			delete(s.devices, r.PostFormValue("device_code"))
		}
		s.mu.Unlock()
		switch {
		case !ok:
			oauthError(w, 400, "expired_token", "unknown or expired device code")
			return
		case !approved:
			oauthError(w, 400, "authorization_pending", "waiting for the user")
			return
		}
		s.issue(w, "device_code", "")
		return
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if msg := s.checkAssertion(r.PostFormValue("assertion")); msg != "" {
			oauthError(w, 400, "unauthorized_client", msg)
			return
		}
		label = "jwt"
	default:
		oauthError(w, 400, "unsupported_grant_type", grant)
		return
	}
	s.issue(w, label, "-")
}

// checkAssertion verifies a JWT bearer assertion signed by the service
// account key, for the mailbox, with the Gmail scope.
func (s *Server) checkAssertion(a string) string {
	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	parts := strings.Split(a, ".")
	if key == nil || len(parts) != 3 {
		return "not a JWT"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err != nil || rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return "invalid signature" // RS256, RFC 7518 §3.3
	}
	var cs struct {
		Sub   string `json:"sub"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
		Scope string `json:"scope"`
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &cs) != nil {
		return "bad claims"
	}
	if cs.Sub != s.opts.Mailbox {
		return "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
	}
	if cs.Aud != s.TokenURL() || cs.Exp < time.Now().Unix() {
		return "bad audience or expired assertion"
	}
	return ""
}

// issue answers with a new access token and, unless prev is "-", a new
// refresh token that replaces prev.
func (s *Server) issue(w http.ResponseWriter, grant, prev string) {
	s.mu.Lock()
	tok := random(s.opts.TokenLen)
	life := s.opts.Lifetime
	s.access[tok] = time.Now().Add(life)
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(life.Seconds())}
	if prev != "-" {
		rt := "rt-" + random(40)
		s.refresh[rt] = prev
		resp["refresh_token"] = rt
	}
	s.counts[grant]++
	hook := s.onIssued
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if hook != nil {
		hook(grant)
	}
}

func (s *Server) deviceCode(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostFormValue("client_id") != s.opts.ClientID {
		oauthError(w, 400, "invalid_client", "unknown client")
		return
	}
	dc := "dc-" + random(32)
	uc := strings.ToUpper(random(8))
	s.mu.Lock()
	s.devices[dc] = &device{userCode: uc}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": s.URL() + "/device",
		"expires_in": 600, "interval": 1,
		"message": fmt.Sprintf("To sign in, open %s/device and enter the code %s.", s.URL(), uc),
	})
}

// random is n characters of URL-safe base64 from crypto/rand.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
