package dnscheck

import (
	"context"
	"strings"
)

// externalReports checks that every rua/ruf destination outside the
// domain's own organizational domain agrees to receive its reports: RFC
// 7489 §7.1 has the receiver look for a v=DMARC1 record at
// DOMAIN._report._dmarc.EXTERNAL and drop the reports without one. It
// returns a WARN for the first destination that does not, nil when all do.
func (ru *run) externalReports(ctx context.Context, what, domain string, tags []tag) (*Finding, error) {
	own := orgDomain(domain)
	for _, key := range []string{"rua", "ruf"} {
		v, ok := tagValue(tags, key)
		if !ok {
			continue
		}
		for _, uri := range strings.Split(v, ",") {
			uri = strings.TrimSpace(uri)
			addr, isMail := strings.CutPrefix(strings.ToLower(uri), "mailto:")
			if !isMail {
				continue
			}
			addr, _, _ = strings.Cut(addr, "!") // a size limit (RFC 7489 §6.2)
			at := strings.LastIndexByte(addr, '@')
			if at < 0 {
				continue
			}
			ext := bare(addr[at+1:])
			if ext == "" || orgDomain(ext) == own {
				continue
			}
			name := domain + "._report._dmarc." + ext
			txts, err := ru.r.txt(ctx, name)
			if err != nil {
				return nil, err
			}
			authorized := false
			for _, t := range txts {
				authorized = authorized || isDMARC(strings.TrimSpace(t))
			}
			if !authorized {
				f := newWarn(what, "ask the owner of "+ext+" to publish "+txtRecord(name, "v=DMARC1")+", or send "+key+" reports to an address at "+own,
					"%s sends reports to %s, which does not authorize them: no v=DMARC1 record at %s, so receivers do not send them (RFC 7489 §7.1)", key, addr, name)
				return &f, nil
			}
		}
	}
	return nil, nil
}

// orgDomain approximates the organizational domain as the last two labels
// (the checks do not consult the Public Suffix List; see checkDMARC).
func orgDomain(d string) string {
	d = bare(d)
	labels := strings.Split(d, ".")
	if len(labels) <= 2 {
		return d
	}
	return strings.Join(labels[len(labels)-2:], ".")
}
