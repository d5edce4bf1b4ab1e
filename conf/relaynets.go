package conf

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// checkRelayUnion refuses relay networks that together cover a whole
// address family: "0.0.0.0/1" plus "128.0.0.0/1" is an open relay as
// surely as "0.0.0.0/0" (which each entry's own check refuses).
// IPv4-mapped IPv6 entries (::ffff:a.b.c.d) never match (clients are
// compared by their plain IPv4 address) and do not count.
func checkRelayUnion(errs *Errors, nets []string) {
	var v4, v6 []netip.Prefix
	for _, n := range nets {
		p, err := parseNet(n)
		switch {
		case err != nil || p.Bits() == 0:
			continue // reported per entry
		case p.Addr().Is4():
			v4 = append(v4, p)
		case !p.Addr().Is4In6():
			v6 = append(v6, p)
		}
	}
	for _, f := range []struct {
		name string
		nets []netip.Prefix
	}{{"IPv4", v4}, {"IPv6", v6}} {
		if coversAll(f.nets) {
			errs.add("listen.relay_networks",
				"together the entries cover every %s address (an open relay); list your networks, or use [[users]] with AUTH", f.name)
		}
	}
}

// coversAll reports whether the prefixes (all of one family) cover the
// whole address space of that family.
func coversAll(ps []netip.Prefix) bool {
	if len(ps) == 0 {
		return false
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return cmp.Or(a.Addr().Compare(b.Addr()), a.Bits()-b.Bits()) })
	next := netip.IPv4Unspecified() // the first address not yet covered
	if ps[0].Addr().Is6() {
		next = netip.IPv6Unspecified()
	}
	for _, p := range ps {
		if next.Less(p.Addr()) {
			return false // a gap
		}
		end := lastAddr(p).Next()
		if !end.IsValid() {
			return true // reached the top of the space
		}
		if next.Less(end) {
			next = end
		}
	}
	return false
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Warnings are problems that do not stop relayd from starting but are
// almost certainly mistakes; the daemon logs them at start and on reload,
// and relayd check reports them.
func (c *Config) Warnings() []string {
	var w []string
	for i, n := range c.Listen.RelayNetworks {
		if p, err := parseNet(n); err == nil && p.Addr().Is4In6() {
			w = append(w, fmt.Sprintf("listen.relay_networks[%d]: %q is an IPv4-mapped IPv6 network, which never matches (IPv4 clients are compared by their IPv4 address): write it as %s",
				i, n, unmapPrefix(p)))
		}
	}
	return append(w, c.routeWarnings()...)
}

// unmapPrefix is p written as plain IPv4 (for the warning's hint).
func unmapPrefix(p netip.Prefix) string {
	bits := p.Bits() - 96
	if bits < 0 {
		return "0.0.0.0/0 (an open relay: rather list your networks)"
	}
	return netip.PrefixFrom(p.Addr().Unmap(), bits).Masked().String()
}
