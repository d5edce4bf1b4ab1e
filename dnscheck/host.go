package dnscheck

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// checkHost checks the EHLO name and the reverse DNS of the public IPs.
// RFC 5321 §2.3.5: the EHLO name must be a fully qualified primary host
// name, one that resolves to an address record (so not a CNAME).
func (ru *run) checkHost(ctx context.Context) {
	host := bare(ru.in.Hostname)
	what := "HELO " + host
	setName := `set hostname = "relay.example.com" in relayd.toml (a name under your domain with an A record for your public IP)`
	var hostAddrs []netip.Addr
	resolved := false
	switch {
	case host == "":
		ru.add(newWarn("HELO", setName, "no hostname given: relayd would introduce itself with a name receivers cannot check"))
	case !strings.Contains(host, ".") || strings.HasSuffix(host, ".localdomain") || strings.HasSuffix(host, ".local"):
		ru.add(newWarn(what, setName, "%s is not a fully qualified domain name; many receivers reject such HELO names (RFC 5321 §2.3.5)", host))
	default:
		ar, err := ru.r.addrs(ctx, host)
		switch {
		case err != nil:
			ru.lookupFailed(what, err)
		case ar.CNAME != "":
			ru.add(newFail(what, "replace the CNAME with A/AAAA records for "+host+", or set hostname = \""+ar.CNAME+"\" in relayd.toml",
				"%s is a CNAME for %s: a violation of standards for a mail host, which must use its primary name (RFC 5321 §2.3.5)", host, ar.CNAME))
		case len(ar.Addrs) == 0:
			ru.add(newFail(what, "publish "+addrRecord(host, ru.in.PublicIPs)+", or set hostname to a name that resolves",
				"%s does not resolve to an IPv4 or IPv6 address; receivers that check the HELO name reject the mail", host))
		default:
			hostAddrs, resolved = ar.Addrs, true
			ru.add(newOK(what, "%s resolves to %s", host, joinAddrs(ar.Addrs)))
		}
	}
	for _, ip := range ru.in.PublicIPs {
		ru.checkRDNS(ctx, host, ip.Unmap(), hostAddrs, resolved)
	}
}

// checkRDNS checks ip's PTR and forward-confirmed reverse DNS against host.
func (ru *run) checkRDNS(ctx context.Context, host string, ip netip.Addr, hostAddrs []netip.Addr, resolved bool) {
	what := "rDNS " + ip.String()
	arpa, _ := dns.ReverseAddr(ip.String())
	wantName := host
	if wantName == "" {
		wantName = "relay.example.com"
	}
	setPTR := "ask whoever owns " + ip.String() + " (your ISP or hosting provider) to set " + arpa + " IN PTR " + fqdn(wantName)
	names, err := ru.r.ptr(ctx, ip)
	if err != nil {
		ru.lookupFailed(what, err)
		return
	}
	if len(names) == 0 {
		ru.add(newFail(what, setPTR, "%s has no PTR record; many receivers reject mail from addresses without reverse DNS", ip))
		return
	}
	if !slices.ContainsFunc(names, func(n string) bool { return sameName(n, host) }) {
		fix := setPTR + `, or set hostname = "` + names[0] + `" in relayd.toml`
		if ar, err := ru.r.addrs(ctx, names[0]); err == nil && slices.Contains(ar.Addrs, ip) {
			fix += " (" + names[0] + " already resolves back to " + ip.String() + ")"
		}
		ru.add(newWarn(what, fix, "PTR of %s is %s, not the HELO name %s", ip, strings.Join(names, ", "), host))
		return
	}
	if !resolved {
		return // the HELO finding already explains why host does not resolve
	}
	if !slices.Contains(hostAddrs, ip) {
		ru.add(newFail(what, "publish "+addrRecord(host, []netip.Addr{ip}),
			"PTR of %s is %s, but %s resolves to %s, not back to %s: forward-confirmed reverse DNS fails", ip, host, host, joinAddrs(hostAddrs), ip))
		return
	}
	ru.add(newOK(what, "PTR is %s and %s resolves back to %s (forward-confirmed)", host, host, ip))
}

// addrRecord renders the A/AAAA record that would make host resolve.
func addrRecord(host string, ips []netip.Addr) string {
	if len(ips) == 0 {
		return fqdn(host) + " IN A <your public IPv4 address>"
	}
	var recs []string
	for _, ip := range ips {
		t := "A"
		if ip.Unmap().Is6() {
			t = "AAAA"
		}
		recs = append(recs, fqdn(host)+" IN "+t+" "+ip.Unmap().String())
	}
	return strings.Join(recs, " and ")
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
