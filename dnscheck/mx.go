package dnscheck

import (
	"context"
	"strconv"
	"strings"
)

// checkMX verifies that domain can receive replies and bounces: it has MX
// records whose targets are host names with addresses, not aliases
// (RFC 5321 §5.1, RFC 2181 §10.3).
func (ru *run) checkMX(ctx context.Context, domain string) {
	what := "MX " + domain
	mxs, err := ru.r.mx(ctx, domain)
	if err != nil {
		ru.lookupFailed(what, err)
		return
	}
	if len(mxs) == 0 {
		ru.add(newWarn(what, "publish an MX record, e.g. "+fqdn(domain)+" IN MX 10 mail."+fqdn(domain)+" (a host that accepts mail for "+domain+")",
			"%s has no MX record: bounces and replies to this domain will fail", domain))
		return
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		ru.add(newWarn(what, "if "+domain+" should receive replies, replace the null MX with a real one; otherwise use a sender address in a domain that accepts mail",
			"%s publishes a null MX (RFC 7505): it accepts no mail, so bounces and replies to it fail", domain))
		return
	}
	bad := false
	var good []string
	for _, mx := range mxs {
		target := strings.TrimSuffix(mx.Mx, ".")
		ar, err := ru.r.addrs(ctx, target)
		if err != nil {
			ru.lookupFailed(what, err)
			bad = true
			continue
		}
		switch {
		case ar.CNAME != "":
			bad = true
			ru.add(newFail(what, "point the MX at the canonical name: "+fqdn(domain)+" IN MX "+strconv.Itoa(int(mx.Preference))+" "+fqdn(ar.CNAME),
				"MX target %s is a CNAME for %s; an MX must name a host with A/AAAA records (RFC 2181 §10.3, RFC 5321 §5.1)", target, ar.CNAME))
		case len(ar.Addrs) == 0:
			bad = true
			ru.add(newFail(what, "publish an A/AAAA record for "+target+" or point the MX at a host that has one",
				"MX target %s has no A or AAAA record", target))
		default:
			good = append(good, target)
		}
	}
	if !bad {
		ru.add(newOK(what, "MX targets %s have addresses", strings.Join(good, ", ")))
	}
}
