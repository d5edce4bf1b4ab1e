package dnscheck

import (
	"context"
	"errors"

	"github.com/miekg/dns"
)

// probeFor checks that the resolver answers at all. It asks for the root's
// SOA; a server that refuses that (an authoritative-only server, such as
// the admin's own BIND primary before the zone is published) is asked for
// the SOA of the checked names instead, and authOnly names the one it
// answered for: the checks then run, and only names outside its zones fail.
func (r *resolver) probeFor(ctx context.Context, names []string) (authOnly string, err error) {
	err = r.probe(ctx)
	var le *LookupError
	if err == nil || !errors.As(err, &le) || le.Transport || le.Rcode != dns.RcodeToString[dns.RcodeRefused] {
		return "", err
	}
	for _, n := range names {
		if n = bare(n); n == "" {
			continue
		}
		for d := n; d != ""; d = parentDomain(d) {
			if m, qerr := r.query(ctx, d, dns.TypeSOA); qerr == nil && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) {
				return d, nil
			}
			if r.deadErr() != nil {
				return "", err
			}
		}
	}
	return "", err
}

// authoritativeOnly is the finding for such a resolver: a warning, not a
// failure, since what it serves can still be checked.
func authoritativeOnly(server, zone string) Finding {
	return newWarn("resolver", "for the view other mail servers get, pass a recursive resolver: --resolver 9.9.9.9:53 (or your ISP's)",
		"%s gives authoritative answers only (it refused the root zone, answered for %s): names outside its zones cannot be checked through it", server, zone)
}
