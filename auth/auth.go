// Package auth checks SMTP AUTH credentials of LAN clients against the
// [[users]] accounts (bcrypt hashes) and decides which senders each user
// may use.
//
// Invariants:
//   - Passwords are compared only with bcrypt; an unknown user costs the
//     same bcrypt comparison as a known one, so timing does not reveal
//     which names exist.
//   - Every failure from an IP slows that IP down (a delay that doubles up
//     to MaxDelay), and after MaxFailures failures within Window the IP is
//     refused with 421 4.7.0 without checking the password at all.
//   - Nothing here logs or keeps a password.
package auth

import (
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"relayd/conf"
)

// Options tune the throttling. Zero values take the defaults.
type Options struct {
	BaseDelay   time.Duration // first failure's delay (default 1s)
	MaxDelay    time.Duration // cap (default 8s)
	MaxFailures int           // per IP within Window (default 10)
	Window      time.Duration // default 1h
	Clock       func() time.Time
	Sleep       func(time.Duration)
}

// ErrTooManyFailures refuses a client that failed too often.
var ErrTooManyFailures = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "Too many authentication failures from your address, try again later"}

// ErrAuthFailed is RFC 4954's 535 5.7.8.
var ErrAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
	Message: "Authentication credentials invalid"}

type account struct {
	hash    []byte
	senders []string
}

type failures struct {
	n     int
	first time.Time
}

// Authenticator implements smtpd.Authenticator.
type Authenticator struct {
	opts  Options
	users map[string]account
	dummy []byte

	mu   sync.Mutex
	fail map[netip.Addr]*failures
}

// New builds an Authenticator from the [[users]] entries (already
// validated by conf).
func New(users []conf.User, opts Options) *Authenticator {
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 8 * time.Second
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	if opts.Window <= 0 {
		opts.Window = time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = time.Sleep
	}
	a := &Authenticator{opts: opts, users: map[string]account{}, fail: map[netip.Addr]*failures{}}
	cost := bcrypt.DefaultCost
	for _, u := range users {
		a.users[u.Name] = account{hash: []byte(u.PasswordHash), senders: lower(u.Senders)}
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			cost = c
		}
	}
	a.dummy, _ = bcrypt.GenerateFromPassword([]byte("relayd: no such user"), cost)
	return a
}

// Authenticate returns nil for good credentials, ErrAuthFailed (after a
// growing delay) for bad ones, and ErrTooManyFailures for an IP over its
// failure budget.
func (a *Authenticator) Authenticate(ip netip.Addr, user, pass string) error {
	if a.blocked(ip) {
		return ErrTooManyFailures
	}
	acct, ok := a.users[user]
	hash := acct.hash
	if !ok {
		hash = a.dummy
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil && ok {
		a.mu.Lock()
		delete(a.fail, ip)
		a.mu.Unlock()
		return nil
	}
	a.opts.Sleep(a.recordFailure(ip))
	return ErrAuthFailed
}

func (a *Authenticator) blocked(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fail[ip]
	if f == nil {
		return false
	}
	if a.opts.Clock().Sub(f.first) > a.opts.Window {
		delete(a.fail, ip)
		return false
	}
	return f.n >= a.opts.MaxFailures
}

// recordFailure counts a failure and returns the delay to impose.
func (a *Authenticator) recordFailure(ip netip.Addr) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.fail) >= sweepAt {
		a.sweep()
	}
	f := a.fail[ip]
	if f == nil {
		f = &failures{first: a.opts.Clock()}
		a.fail[ip] = f
	}
	f.n++
	d := a.opts.BaseDelay << min(f.n-1, 16)
	return min(d, a.opts.MaxDelay)
}

// sweepAt is the size of the failure table at which entries older than
// Window are dropped, so the table follows recent attackers, not history.
const sweepAt = 4096

func (a *Authenticator) sweep() {
	now := a.opts.Clock()
	for ip, f := range a.fail {
		if now.Sub(f.first) > a.opts.Window {
			delete(a.fail, ip)
		}
	}
}

// MaySend reports whether user may use addr as envelope sender or header
// From. Patterns are shell globs matched case-insensitively against the
// whole address: "*@example.com", "app1@example.com".
func (a *Authenticator) MaySend(user, addr string) bool {
	acct, ok := a.users[user]
	if !ok {
		return false
	}
	addr = strings.ToLower(addr)
	for _, p := range acct.senders {
		if ok, _ := path.Match(p, addr); ok {
			return true
		}
	}
	return false
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}
