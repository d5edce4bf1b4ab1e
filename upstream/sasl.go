package upstream

// SASL mechanisms for the smarthost (RFC 4954): PLAIN, LOGIN, and the two
// OAuth2 bearer-token mechanisms, XOAUTH2 (Google's and Microsoft's; not in
// go-sasl, written here) and OAUTHBEARER (RFC 7628, go-sasl's client).
//
// Both OAuth2 mechanisms answer an error challenge the same way: a 334
// carrying base64 JSON ({"status":"invalid_token",...}) is answered with the
// dummy response that ends the exchange (RFC 7628 §3.2.3: %x01 for
// OAUTHBEARER; Google's XOAUTH2 documentation: an empty line), the server
// then replies 535, and the JSON status goes into the *Error's Hint. A token
// never appears in an error, a hint or a log line.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/emersion/go-sasl"

	"relayd/internal/reply"
)

// Values of Config.Auth.
const (
	AuthAuto        = ""            // PLAIN if offered, else LOGIN
	AuthPlain       = "plain"       // RFC 4616
	AuthLogin       = "login"       // draft-murchison-sasl-login
	AuthXOAuth2     = "xoauth2"     // Google/Microsoft bearer token
	AuthOAuthBearer = "oauthbearer" // RFC 7628
)

// MechXOAuth2 is the SASL name of XOAUTH2.
const MechXOAuth2 = "XOAUTH2"

// TokenSource supplies OAuth2 access tokens. Token may block while a token
// is fetched; its error may implement Temporary() bool (false: the admin
// must act) and Hint() string (the fix), and must not contain a secret.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	// Reject reports that the smarthost refused token. It returns true when
	// the token had just been issued (so a new one will not help: the
	// credentials or permissions are wrong); otherwise the source drops it
	// and the next Token fetches another.
	Reject(token string) (fresh bool)
}

// oauthState is the Client's memory about OAuth2 logins.
type oauthState struct {
	// warned: the "fresh token refused" error was logged since the last
	// successful login (it is logged once, not per delivery).
	warned atomic.Bool
}

// checkAuth validates Auth against the credentials given.
func (cfg Config) checkAuth() []error {
	var errs []error
	switch cfg.Auth {
	case AuthAuto, AuthPlain, AuthLogin:
		if cfg.Username != "" && cfg.Password == "" {
			errs = append(errs, errors.New("upstream: username set but the password is empty"))
		}
		if cfg.Auth != AuthAuto && cfg.Username == "" {
			errs = append(errs, fmt.Errorf("upstream: auth = %q needs a username", cfg.Auth))
		}
	case AuthXOAuth2, AuthOAuthBearer:
		if cfg.Username == "" {
			errs = append(errs, fmt.Errorf("upstream: auth = %q needs the username (the mailbox the token is for)", cfg.Auth))
		}
		if cfg.Tokens == nil {
			errs = append(errs, fmt.Errorf("upstream: auth = %q needs an OAuth2 token source", cfg.Auth))
		}
	default:
		errs = append(errs, fmt.Errorf("upstream: auth = %q: want \"\", \"plain\", \"login\", \"xoauth2\" or \"oauthbearer\"", cfg.Auth))
	}
	return errs
}

// saslClient picks the mechanism for mechs (the AUTH keyword's value) and,
// for the OAuth2 ones, gets a token.
func (c *Client) saslClient(ctx context.Context, s *session, host, mechs string) (sasl.Client, *Error) {
	offered := map[string]bool{}
	for _, m := range strings.Fields(mechs) {
		offered[strings.ToUpper(m)] = true
	}
	user, pass := c.cfg.Username, c.cfg.Password
	want := ""
	switch c.cfg.Auth {
	case AuthAuto:
		switch {
		case offered[sasl.Plain]:
			return sasl.NewPlainClient("", user, pass), nil
		case offered[sasl.Login]:
			return &loginClient{user: user, pass: pass}, nil
		}
		return nil, &Error{Stage: StageAuth, Addr: s.addr, Err: fmt.Errorf("no supported AUTH mechanism in %q (want PLAIN or LOGIN)", mechs)}
	case AuthPlain:
		want = sasl.Plain
	case AuthLogin:
		want = sasl.Login
	case AuthXOAuth2:
		want = MechXOAuth2
	case AuthOAuthBearer:
		want = sasl.OAuthBearer
	}
	if !offered[want] {
		return nil, &Error{Stage: StageAuth, Addr: s.addr, Err: fmt.Errorf("server does not offer AUTH %s (it offers %q)", want, mechs),
			Hint: "set upstream.auth to a mechanism the smarthost offers"}
	}
	switch want {
	case sasl.Plain:
		return sasl.NewPlainClient("", user, pass), nil
	case sasl.Login:
		return &loginClient{user: user, pass: pass}, nil
	}
	tok, err := c.cfg.Tokens.Token(ctx)
	if err != nil {
		return nil, tokenError(s.addr, err)
	}
	if want == MechXOAuth2 {
		return &xoauth2Client{user: user, tok: tok}, nil
	}
	_, p, _ := net.SplitHostPort(s.addr)
	port, _ := strconv.Atoi(p)
	return &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
		Username: user, Token: tok, Host: host, Port: port}), tok: tok}, nil
}

// tokenError makes a token source's failure a session-level AUTH failure:
// the delivery is deferred like any refused login, never bounced.
func tokenError(addr string, err error) *Error {
	e := &Error{Stage: StageAuth, Addr: addr, Temporary: true, Err: fmt.Errorf("getting an OAuth2 token: %w", err)}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		e.Temporary = t.Temporary()
	}
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		e.Hint = h.Hint()
	}
	return e
}

// oauthFix is what to check when the smarthost refuses a token its issuer
// has just made.
const oauthFix = "the token endpoint issued the token but the smarthost refuses it: upstream.username must be the mailbox the token is for " +
	"(grant \"jwt\": oauth2.subject), the scopes must cover SMTP (Microsoft 365: https://outlook.office365.com/SMTP.Send, or .default with " +
	"SMTP.SendAsApp and the app's service principal given access to the mailbox; Google: https://mail.google.com/), and SMTP AUTH must be " +
	"enabled for the mailbox (Microsoft 365: Set-CASMailbox -Identity MAILBOX -SmtpClientAuthenticationDisabled $false)"

// authFailed completes the *Error of a refused AUTH. For the OAuth2
// mechanisms it reports the error challenge's status and tells the token
// source, and logs once (until a login succeeds again) when a fresh token
// was refused.
func (c *Client) authFailed(s *session, client sasl.Client, e *Error) *Error {
	m, ok := client.(oauthMech)
	if !ok {
		return e
	}
	status := m.status()
	if status == "" && e.Code != 535 {
		return e // not about the token (e.g. 454 or 500 from the server)
	}
	what := "the smarthost refused the OAuth2 token"
	if status != "" {
		what += fmt.Sprintf(" (error status %q)", status)
	}
	e.oauthStatus = status
	if !c.cfg.Tokens.Reject(m.token()) {
		e.Hint = what + "; a new token is fetched for the next attempt"
		e.staleToken = true // no AUTH backoff: the next login uses a new token
		return e
	}
	e.Hint, e.fix = what+": "+oauthFix, oauthFix
	if c.oauth.warned.CompareAndSwap(false, true) {
		line := ""
		if e.Code != 0 {
			line = reply.Reply{Code: e.Code, Text: e.Message}.String()
		}
		c.log.Error("smarthost refuses a freshly issued OAuth2 token: mail is deferred until this is fixed",
			"addr", s.addr, "user", c.cfg.Username, "mechanism", c.cfg.Auth, "status", status, "reply", line, "fix", oauthFix)
	}
	return e
}

// authOK notes a successful login.
func (c *Client) authOK() { c.oauth.warned.Store(false) }

// oauthMech is implemented by the OAuth2 mechanisms.
type oauthMech interface {
	status() string // the error challenge's JSON status, "" if none
	token() string
}

// errorStatus reads the "status" of an RFC 7628 §3.2.2 error challenge,
// shortened and stripped to printable characters (it comes from the server
// and goes to logs).
func errorStatus(challenge []byte) string {
	var j struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(challenge, &j) != nil {
		return "(not JSON)"
	}
	st := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, j.Status)
	if len(st) > 64 {
		st = st[:64]
	}
	return st
}

// xoauth2Client is the client side of XOAUTH2: the initial response
// "user=U^Aauth=Bearer T^A^A"; an error challenge is answered with an
// empty response, after which the server sends 535.
type xoauth2Client struct {
	user, tok string
	errStatus string
	failed    bool
}

var _ sasl.Client = (*xoauth2Client)(nil)

func (x *xoauth2Client) Start() (string, []byte, error) {
	return MechXOAuth2, []byte("user=" + x.user + "\x01auth=Bearer " + x.tok + "\x01\x01"), nil
}

func (x *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if x.failed {
		return nil, errors.New("upstream: XOAUTH2: a second challenge after the error challenge")
	}
	x.failed = true
	x.errStatus = errorStatus(challenge)
	return []byte{}, nil // not nil: go-smtp sends an empty line
}

func (x *xoauth2Client) status() string { return x.errStatus }
func (x *xoauth2Client) token() string  { return x.tok }

// oauthBearerClient is go-sasl's OAUTHBEARER with the error challenge
// answered per RFC 7628 §3.2.3 (go-sasl's client aborts the exchange with
// "*" instead, which loses the server's 535).
type oauthBearerClient struct {
	sasl.Client
	tok       string
	errStatus string
	failed    bool
}

func (o *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if o.failed {
		return nil, errors.New("upstream: OAUTHBEARER: a second challenge after the error challenge")
	}
	o.failed = true
	o.errStatus = errorStatus(challenge)
	return []byte{0x01}, nil
}

func (o *oauthBearerClient) status() string { return o.errStatus }
func (o *oauthBearerClient) token() string  { return o.tok }
