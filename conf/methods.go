package conf

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
)

// RelayNets returns listen.relay_networks parsed. Entries that do not parse
// are left out; a validated Config has none.
func (c *Config) RelayNets() []netip.Prefix {
	nets := make([]netip.Prefix, 0, len(c.Listen.RelayNetworks))
	for _, n := range c.Listen.RelayNetworks {
		if p, err := parseNet(n); err == nil {
			nets = append(nets, p)
		}
	}
	return nets
}

// Hold reports that no smarthost is configured: mail stays in the queue.
func (u Upstream) Hold() bool { return u.Address == "" }

// redacted stands in for the password wherever Upstream is printed.
const redacted = "[REDACTED]"

// safe is Upstream with the password replaced, for printing.
func (u Upstream) safe() upstreamNoMethods {
	if u.Password != "" {
		u.Password = redacted
	}
	if u.OAuth2.ClientSecret != "" {
		u.OAuth2.ClientSecret = redacted
	}
	return upstreamNoMethods(u)
}

// upstreamNoMethods has Upstream's fields but not its String and GoString
// methods, so fmt can print it without recursing.
type upstreamNoMethods Upstream

// String prints the fields with the password redacted.
func (u Upstream) String() string { return fmt.Sprintf("%+v", u.safe()) }

// GoString is String for %#v.
func (u Upstream) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", u.safe()), "upstreamNoMethods", "Upstream", 1)
}

// LogValue implements slog.LogValuer without the password.
func (u Upstream) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("address", u.Address),
		slog.String("tls", u.TLS),
	}
	if u.Username != "" {
		attrs = append(attrs, slog.String("username", u.Username))
	}
	if u.Password != "" {
		attrs = append(attrs, slog.String("password", redacted))
	}
	if u.Auth != "" {
		attrs = append(attrs, slog.String("auth", u.Auth))
	}
	return slog.GroupValue(attrs...)
}
