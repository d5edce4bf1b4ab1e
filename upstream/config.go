package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"relayd/internal/defaults"
	"relayd/internal/loopback"
	"relayd/internal/tlsmode"
)

// Dialer opens TCP connections; *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Config configures a Client. Zero fields take the defaults noted.
type Config struct {
	Address  string   // host:port of the smarthost
	Fallback []string // tried in order when a relay fails at session level
	TLS      string   // "starttls" (default) | "implicit" | "none" (loopback only)
	// RootCAs verifies the smarthost; nil means the system roots. See
	// LoadCAFile for upstream.ca_file.
	RootCAs *x509.CertPool
	// InsecureSkipVerify disables certificate verification: an explicit
	// admin opt-out, logged loudly at New.
	InsecureSkipVerify bool
	Hostname           string // EHLO name (default: os.Hostname)
	// NullSender replaces the null sender <> in MAIL FROM (relayd's
	// notices) for a smarthost that refuses it (upstream.null_sender);
	// "" sends <>.
	NullSender         string
	Username, Password string
	// Auth picks the SASL mechanism (see sasl.go): "" = PLAIN if offered,
	// else LOGIN; "plain", "login", "xoauth2", "oauthbearer".
	Auth string
	// Tokens supplies the OAuth2 access tokens of xoauth2 and oauthbearer.
	Tokens TokenSource
	// Timeout bounds connecting, every write, and every reply as a whole,
	// all its lines together (default 2m).
	Timeout time.Duration
	// MinDataRate (bytes per second, default 32 KiB/s) sizes the total
	// deadline of one delivery: 3*Timeout + Size/MinDataRate, from the
	// first command to the reply to the final dot. A smarthost slower than
	// that for a whole message is as good as down.
	MinDataRate int64
	// MinBackoff and MaxBackoff (the queue's; defaults 5m and 1h) bound
	// how long a relay is left alone after it rejected the credentials
	// (authgate.go: MinBackoff doubling to MaxBackoff) or timed out
	// (health.go: at most 30s doubling to 10m).
	MinBackoff, MaxBackoff time.Duration
	// MaxConns caps the connections open at once, idle ones included
	// (default 4, the default queue concurrency).
	MaxConns int
	// IdleKeep is how long an idle connection is kept for reuse before QUIT
	// (default 30s; negative disables reuse).
	IdleKeep time.Duration
	Dialer   Dialer           // default: *net.Dialer
	Logger   *slog.Logger     // default: slog.Default()
	Clock    func() time.Time // default: time.Now
}

// LoadCAFile returns the system roots plus the PEM certificates in path.
func LoadCAFile(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil // no extra roots: the system's (RootCAs nil)
	}
	pemData, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("upstream: ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("upstream: ca_file %s: no PEM certificate found", path)
	}
	return pool, nil
}

// normalize validates cfg and fills in the defaults (internal/defaults for
// the values conf also sets).
func (cfg Config) normalize() (Config, error) {
	var errs []error
	if cfg.Address == "" {
		errs = append(errs, errors.New("upstream: no smarthost address"))
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = tlsmode.StartTLS
	case tlsmode.StartTLS, tlsmode.Implicit, tlsmode.None:
	default:
		errs = append(errs, fmt.Errorf("upstream: tls = %q: want \"starttls\", \"implicit\" or \"none\"", cfg.TLS))
	}
	for _, a := range cfg.relays() {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream: address %q: %w", a, err))
			continue
		}
		if cfg.TLS == tlsmode.None && !loopback.Host(host) {
			errs = append(errs, fmt.Errorf("upstream: tls = \"none\" refused for %s: only a loopback smarthost may be reached without TLS", a))
		}
	}
	if badLine(cfg.NullSender) || strings.ContainsAny(cfg.NullSender, "<> ") {
		errs = append(errs, fmt.Errorf("upstream: null_sender %q is not an address", cfg.NullSender))
	}
	errs = append(errs, cfg.checkAuth()...)
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		cfg.Hostname = h
	}
	// relayd's config always sets Timeout, the backoffs and MaxConns
	// (conf fills its defaults in); these are for direct use, with conf's
	// own constants.
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaults.UpstreamTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaults.MinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, defaults.MaxBackoff)
	}
	if cfg.MinDataRate <= 0 {
		cfg.MinDataRate = 32 << 10
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaults.Concurrency
	}
	if cfg.IdleKeep == 0 {
		cfg.IdleKeep = 30 * time.Second
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg, nil
}

// deliveryTimeout is the total deadline of a delivery of size bytes.
func (cfg Config) deliveryTimeout(size int64) time.Duration {
	return 3*cfg.Timeout + time.Duration(float64(max(size, 0))/float64(cfg.MinDataRate)*float64(time.Second))
}

func (cfg Config) relays() []string {
	return append([]string{cfg.Address}, cfg.Fallback...)
}
