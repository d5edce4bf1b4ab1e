// Package auth checks SMTP AUTH credentials of LAN clients against the
// [[users]] accounts (bcrypt hashes) and decides which senders each user
// may use.
//
// Invariants:
//   - Passwords are compared only with bcrypt; an unknown user costs a
//     bcrypt comparison at the highest configured cost, so timing does not
//     reveal which names exist.
//   - Failures are counted per client IP and per username. Every failure
//     from an IP slows that IP down (a delay that doubles up to MaxDelay);
//     after MaxFailures failures from an IP, or MaxUserFailures for one
//     username (from any IP), within Window, the attempt is refused with
//     421 4.7.0 without checking the password at all. The per-username
//     budget does not apply from an address where that user logged in
//     within Window, so flooding a name locks out the attacker, not the
//     application that uses it.
//   - An attempt is counted (reserved) before bcrypt runs, so concurrent
//     attempts cannot overrun the budget: at most MaxFailures passwords
//     from one IP are ever evaluated per Window.
//   - A success forgives only that user's own failures from that IP;
//     another account's success never resets the IP's count (one known
//     account must not let an IP brute-force the others).
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
)

// Options tune the throttling. Zero values take the defaults.
type Options struct {
	BaseDelay   time.Duration // first failure's delay (default 1s)
	MaxDelay    time.Duration // cap (default 8s)
	MaxFailures int           // per IP within Window (default 10)
	// MaxUserFailures is per username, from all IPs, within Window
	// (default 3 × MaxFailures): it stops a brute force spread over many
	// addresses. It also lets anyone lock an account out for Window, so it
	// is kept well above what one IP may try.
	MaxUserFailures int
	Window          time.Duration // default 1h
	Clock           func() time.Time
	Sleep           func(time.Duration)
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

// failures counts attempts that failed, or are being evaluated (reserved),
// within a window starting at first.
type failures struct {
	n      int
	first  time.Time
	byUser map[string]int // per IP: the share of n each username caused
}

// Authenticator implements smtpd.Authenticator.
type Authenticator struct {
	opts  Options
	users map[string]account
	dummy []byte

	mu       sync.Mutex
	fail     map[netip.Addr]*failures
	userFail map[string]*failures
	good     map[string]map[netip.Addr]time.Time // user -> addresses of recent logins
}

// maxGoodPerUser bounds the remembered login addresses of one user.
const maxGoodPerUser = 16

// User is one SMTP AUTH account (a [[users]] entry).
type User struct {
	Name         string
	PasswordHash string   // bcrypt
	Senders      []string // envelope sender patterns, e.g. "*@example.com"
}

// New builds an Authenticator from the accounts (already validated by
// conf).
func New(users []User, opts Options) *Authenticator {
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 8 * time.Second
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	if opts.MaxUserFailures <= 0 {
		opts.MaxUserFailures = 3 * opts.MaxFailures
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
	a := &Authenticator{opts: opts, users: map[string]account{}, fail: map[netip.Addr]*failures{},
		userFail: map[string]*failures{}, good: map[string]map[netip.Addr]time.Time{}}
	cost := 0
	for _, u := range users {
		a.users[u.Name] = account{hash: []byte(u.PasswordHash), senders: lower(u.Senders)}
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil && c > cost {
			cost = c // the highest: an unknown name must not answer faster
		}
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	a.dummy, _ = bcrypt.GenerateFromPassword([]byte("relayd: no such user"), cost)
	return a
}

// Authenticate returns nil for good credentials, ErrAuthFailed (after a
// growing delay) for bad ones, and ErrTooManyFailures for an IP or a
// username over its failure budget.
func (a *Authenticator) Authenticate(ip netip.Addr, user, pass string) error {
	ip = clientKey(ip)
	if !a.reserve(ip, user) {
		return ErrTooManyFailures
	}
	acct, ok := a.users[user]
	hash := acct.hash
	if !ok {
		hash = a.dummy
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil && ok {
		a.succeeded(ip, user)
		return nil
	}
	a.opts.Sleep(a.delay(ip))
	return ErrAuthFailed
}

// clientKey is what the per-IP budget counts: the address, or for IPv6 its
// /64, which one client usually holds whole (counting single addresses
// would give it 2^64 budgets).
func clientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// reserve counts the attempt as a failure before its password is checked,
// or reports false (nothing counted) when the IP or the username is over
// its budget. A success takes the reservation back (succeeded).
func (a *Authenticator) reserve(ip netip.Addr, user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.opts.Clock()
	if len(a.fail) >= sweepAt || len(a.userFail) >= sweepAt {
		a.sweep(now)
	}
	f := current(a, a.fail, ip, now)
	uf := current(a, a.userFail, user, now)
	if f.n >= a.opts.MaxFailures || (uf.n >= a.opts.MaxUserFailures && !a.knownGood(user, ip, now)) {
		return false
	}
	f.n++
	if f.byUser == nil {
		f.byUser = map[string]int{}
	}
	f.byUser[user]++
	uf.n++
	return true
}

// current returns key's failure counter, started afresh when its window
// has passed.
func current[K comparable](a *Authenticator, m map[K]*failures, key K, now time.Time) *failures {
	f := m[key]
	if f == nil || now.Sub(f.first) > a.opts.Window {
		f = &failures{first: now}
		m[key] = f
	}
	return f
}

// knownGood reports whether user logged in from ip within Window.
func (a *Authenticator) knownGood(user string, ip netip.Addr, now time.Time) bool {
	t, ok := a.good[user][ip]
	return ok && now.Sub(t) <= a.opts.Window
}

// rememberGood records a login of user from ip, keeping the most recent
// maxGoodPerUser addresses.
func (a *Authenticator) rememberGood(user string, ip netip.Addr, now time.Time) {
	g := a.good[user]
	if g == nil {
		g = map[netip.Addr]time.Time{}
		a.good[user] = g
	}
	if _, ok := g[ip]; !ok && len(g) >= maxGoodPerUser {
		var oldest netip.Addr
		for k, t := range g {
			if !oldest.IsValid() || t.Before(g[oldest]) {
				oldest = k
			}
		}
		delete(g, oldest)
	}
	g[ip] = now
}

// succeeded takes back the reservation of a good login and forgives the
// failures this user had from this IP (a mistyped password), and only
// those: other usernames' failures from the IP stay counted.
func (a *Authenticator) succeeded(ip netip.Addr, user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rememberGood(user, ip, a.opts.Clock())
	f := a.fail[ip]
	if f == nil {
		return
	}
	own := f.byUser[user]
	delete(f.byUser, user)
	f.n -= own
	if uf := a.userFail[user]; uf != nil {
		uf.n = max(uf.n-own, 0)
	}
}

// delay is the pause after a failure: BaseDelay doubled for each failure
// counted for the IP, up to MaxDelay.
func (a *Authenticator) delay(ip netip.Addr) time.Duration {
	a.mu.Lock()
	n := 1
	if f := a.fail[ip]; f != nil {
		n = max(f.n, 1)
	}
	a.mu.Unlock()
	d := a.opts.BaseDelay << min(n-1, 16)
	return min(d, a.opts.MaxDelay)
}

// sweepAt is the size of the failure table at which entries older than
// Window are dropped, so the table follows recent attackers, not history.
const sweepAt = 4096

func (a *Authenticator) sweep(now time.Time) {
	for ip, f := range a.fail {
		if now.Sub(f.first) > a.opts.Window {
			delete(a.fail, ip)
		}
	}
	for u, f := range a.userFail {
		if now.Sub(f.first) > a.opts.Window {
			delete(a.userFail, u)
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
