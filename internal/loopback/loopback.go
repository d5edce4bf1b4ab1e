// Package loopback is relayd's one rule for "this host, over the loopback
// interface": where plain text (tls = "none") and AUTH without TLS are
// allowed.
package loopback

import (
	"net/netip"
	"strings"
)

// Host reports whether host (a name or an IP literal, without brackets or
// port) is loopback: the name "localhost" in any case (RFC 6761 §6.3),
// an address in 127.0.0.0/8 or ::1 (RFC 6890), or an IPv4-mapped IPv6
// address of 127.0.0.0/8 (::ffff:127.0.0.1: the same IPv4 loopback
// destination on a dual-stack socket).
func Host(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && Addr(a)
}

// Addr reports whether a is a loopback address (see Host).
func Addr(a netip.Addr) bool {
	return a.Unmap().IsLoopback()
}
