package conf

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
)

// validDNSName reports whether s is an ASCII DNS name of letters, digits and
// hyphens (RFC 1123), without a trailing dot.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// checkHostPort checks "host:port" with a numeric port in [minPort, 65535]
// and a host that is empty (only if emptyHost), an IP or a DNS name. It
// returns the host.
func checkHostPort(addr string, emptyHost bool, minPort uint64) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port (e.g. \"127.0.0.1:25\", \"[::1]:25\", \"smtp.example.net:587\")", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n < minPort {
		return "", fmt.Errorf("%q: port %q is not a number from %d to 65535", addr, port, minPort)
	}
	switch {
	case host == "":
		if !emptyHost {
			return "", fmt.Errorf("%q has no host", addr)
		}
	case validDNSName(host):
	default:
		if _, err := netip.ParseAddr(host); err != nil {
			return "", fmt.Errorf("%q: %q is neither an IP address nor a DNS name", addr, host)
		}
	}
	return host, nil
}

// parseNet parses a CIDR prefix, or a bare IP as a single-address prefix,
// and returns it masked.
func parseNet(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR network (e.g. \"192.168.1.0/24\") nor an IP address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkAddrSpec checks that s is a bare RFC 5322 addr-spec local@domain
// whose domain is a DNS name.
func checkAddrSpec(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("%q is not an address of the form local@domain", s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || !validDNSName(s[at+1:]) {
		return fmt.Errorf("%q: the domain is not a valid DNS name", s)
	}
	return nil
}

// validLocalDomain accepts what rewrite.local_domains may hold: a DNS name
// (a trailing dot is tolerated) or an address literal, "[192.0.2.1]" or
// "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3).
func validLocalDomain(s string) bool {
	if lit, ok := strings.CutPrefix(s, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		if v6, isV6 := cutFoldPrefix(lit, "IPv6:"); isV6 {
			a, err := netip.ParseAddr(v6)
			return ok && err == nil && a.Is6()
		}
		a, err := netip.ParseAddr(lit)
		return ok && err == nil && a.Is4()
	}
	return validDNSName(strings.TrimSuffix(s, "."))
}

func cutFoldPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
