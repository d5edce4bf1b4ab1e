package conf

import (
	"context"
	"net"
	"os"
	"strings"
	"time"

	builtin "relayd/internal/defaults" // conf's own func defaults fills them in
	"relayd/internal/tlsmode"
)

// resolver is the part of *net.Resolver used to find the host's FQDN.
type resolver interface {
	LookupCNAME(ctx context.Context, host string) (string, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// env is everything outside the config file that loading depends on, so
// tests can replace it.
type env struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	hostname func() (string, error)
	resolver resolver
	// noSecrets: do not read the smarthost password (LoadClient).
	noSecrets bool
}

func osEnv() env {
	return env{
		getenv:   os.Getenv,
		readFile: os.ReadFile,
		hostname: os.Hostname,
		resolver: net.DefaultResolver,
	}
}

// DefaultStateDir is the built-in state_dir: the Debian package's spool
// (systemd's StateDirectory=relayd), so that mail held by a daemon on the
// built-in defaults is the packaged daemon's mail too. Before issue 17 it
// was /var/spool/relayd; the daemon imports mail it finds there.
const DefaultStateDir = "/var/lib/relayd"

// defaults returns the built-in configuration (listen on loopback, relay
// for loopback, no smarthost: mail is held in the queue) without the
// hostname, which costs a DNS lookup: Load("") and Parse add it.
func defaults() *Config {
	return &Config{
		StateDir: DefaultStateDir,
		Listen: Listen{
			SMTP:                []string{"127.0.0.1:25", "[::1]:25"},
			RelayNetworks:       []string{"127.0.0.0/8", "::1/128"},
			MaxMessageBytes:     26214400,
			MaxRecipients:       1000,
			IdleTimeout:         Duration{5 * time.Minute},
			MaxConnections:      1000,
			MaxConnectionsPerIP: 50,
		},
		Upstream: Upstream{
			TLS:     tlsmode.StartTLS,
			Timeout: Duration{builtin.UpstreamTimeout},
		},
		Queue: Queue{
			MinBackoff:   Duration{builtin.MinBackoff},
			MaxBackoff:   Duration{builtin.MaxBackoff},
			MaxAge:       Duration{builtin.MaxAge},
			DelayWarning: Duration{4 * time.Hour},
			Concurrency:  builtin.Concurrency,
			MinFreeBytes: 64 << 20,
			Flush:        "auto",
		},
		Log: Log{Format: "text", Level: "info"},
	}
}

// fqdn returns the host's fully qualified name: os.Hostname if it has a dot,
// else its canonical name from the resolver (CNAME, then the reverse name of
// its addresses, as `hostname -f` does), else the bare name, else
// "localhost".
func (e env) fqdn() string {
	h, err := e.hostname()
	h = strings.TrimSuffix(h, ".")
	if err != nil || h == "" {
		return "localhost"
	}
	if strings.Contains(h, ".") {
		return h
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	qualifies := func(name string) (string, bool) {
		name = strings.TrimSuffix(name, ".")
		return name, strings.HasPrefix(strings.ToLower(name), strings.ToLower(h)+".")
	}
	if cname, err := e.resolver.LookupCNAME(ctx, h); err == nil {
		if name, ok := qualifies(cname); ok {
			return name
		}
	}
	addrs, err := e.resolver.LookupHost(ctx, h)
	if err != nil {
		return h
	}
	for _, a := range addrs {
		names, err := e.resolver.LookupAddr(ctx, a)
		if err != nil {
			continue
		}
		for _, n := range names {
			if name, ok := qualifies(n); ok {
				return name
			}
		}
	}
	return h
}

// HostFQDN is the OS host name qualified through the resolver, as the
// default hostname is found (see fqdn); it may cost a DNS lookup.
func HostFQDN() string { return osEnv().fqdn() }
