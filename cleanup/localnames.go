package cleanup

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"strings"

	"relayd/internal/loopback"
)

// Host is what the machine says about its own names, injected so the
// discovery can be tested without touching the real host.
type Host struct {
	Hostname func() (string, error)       // the OS host name (os.Hostname)
	FQDN     func() string                // that name qualified through the resolver; nil: none
	ReadFile func(string) ([]byte, error) // reads Mailname
	Mailname string                       // "/etc/mailname" on Debian; "" for none
	Addrs    func() ([]net.Addr, error)   // the interface addresses (net.InterfaceAddrs)
}

// OSHost is the real host; fqdn may be nil (no DNS lookup).
func OSHost(fqdn func() string) Host {
	return Host{Hostname: os.Hostname, FQDN: fqdn, ReadFile: os.ReadFile,
		Mailname: "/etc/mailname", Addrs: net.InterfaceAddrs}
}

// LocalDomains returns the names by which mail may address this host
// itself, beyond the configured hostname and localhost (which Config always
// treats as local): the OS host name, its FQDN, the name in /etc/mailname,
// every interface address as a literal ("[192.0.2.1]", "[IPv6:2001:db8::1]",
// RFC 5321 §4.1.3), then extra (rewrite.local_domains) as given.
//
// A discovered name that is one of mailDomains (the domains of
// rewrite.admin, rewrite.sender and the DKIM keys: domains that evidently
// receive real mail elsewhere) is left out, so that an /etc/mailname of
// "example.com" does not send every bob@example.com to rewrite.admin.
// Names in extra are the admin's explicit choice and always kept.
func (h Host) LocalDomains(extra, mailDomains []string) []string {
	var out []string
	skip, seen := map[string]bool{}, map[string]bool{}
	for _, d := range mailDomains {
		skip[normDomain(d)] = true
	}
	add := func(d string) {
		if d = normDomain(d); d != "" && !skip[d] && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	if h.Hostname != nil {
		if n, err := h.Hostname(); err == nil {
			add(n)
		}
	}
	if h.FQDN != nil {
		add(h.FQDN())
	}
	if h.Mailname != "" && h.ReadFile != nil {
		if b, err := h.ReadFile(h.Mailname); err == nil {
			// The first line is the name (Debian policy §11.6).
			line, _, _ := bytes.Cut(b, []byte("\n"))
			if n := strings.TrimSpace(string(line)); !strings.ContainsAny(n, " \t@") {
				add(n)
			}
		}
	}
	if h.Addrs != nil {
		if addrs, err := h.Addrs(); err == nil {
			for _, a := range addrs {
				var ip net.IP
				switch v := a.(type) {
				case *net.IPNet:
					ip = v.IP
				case *net.IPAddr:
					ip = v.IP
				}
				if na, ok := netip.AddrFromSlice(ip); ok {
					add(literal(na))
				}
			}
		}
	}
	for _, d := range extra {
		if d = normDomain(d); d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// literal is the address literal of a (RFC 5321 §4.1.3).
func literal(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return "[" + a.String() + "]"
	}
	return "[IPv6:" + a.String() + "]"
}

// parseLiteral returns the address of an address literal ("[192.0.2.1]",
// "[IPv6:::1]", the tag in any case).
func parseLiteral(d string) (netip.Addr, bool) {
	lit, ok := strings.CutPrefix(d, "[")
	if !ok {
		return netip.Addr{}, false
	}
	if lit, ok = strings.CutSuffix(lit, "]"); !ok {
		return netip.Addr{}, false
	}
	v6 := len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:")
	if v6 {
		lit = lit[5:]
	}
	a, err := netip.ParseAddr(lit)
	if err != nil || a.Zone() != "" || a.Is6() != v6 {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// normDomain lower-cases a domain and drops a trailing dot; literals are
// put in canonical form.
func normDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	if a, ok := parseLiteral(d); ok {
		return literal(a)
	}
	return d
}

// localSet is the set of local domains, built once per configuration.
type localSet struct {
	names map[string]bool
	ips   map[netip.Addr]bool
}

func newLocalSet(hostname string, domains []string) localSet {
	s := localSet{names: map[string]bool{}, ips: map[netip.Addr]bool{}}
	for _, d := range append([]string{hostname, "localhost", "localhost.localdomain"}, domains...) {
		d = normDomain(d)
		if a, ok := parseLiteral(d); ok {
			s.ips[a] = true
		} else if d != "" {
			s.names[d] = true
		}
	}
	return s
}

// has reports whether d (a domain as it appears in an address) is local. A
// loopback literal always is: 127.0.0.0/8 and ::1 are this host on every
// machine.
func (s localSet) has(d string) bool {
	d = normDomain(d)
	if a, ok := parseLiteral(d); ok {
		return loopback.Addr(a) || s.ips[a]
	}
	return s.names[d]
}
