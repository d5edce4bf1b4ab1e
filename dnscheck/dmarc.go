package dnscheck

import (
	"context"
	"fmt"
	"strings"
)

// suggestedDMARC is the record we propose for a domain without one.
func suggestedDMARC(domain string) string {
	return txtRecord("_dmarc."+domain, "v=DMARC1; p=quarantine; rua=mailto:postmaster@"+domain)
}

// checkDMARC finds the DMARC policy that applies to domain (RFC 7489 §6.6.3)
// and reports it.
func (ru *run) checkDMARC(ctx context.Context, domain string) {
	what := "DMARC " + domain
	f, err := ru.dmarcFinding(ctx, what, domain)
	if err != nil {
		ru.lookupFailed(what, err)
		return
	}
	ru.add(f)
	ru.add(ru.after...)
	ru.after = nil
}

func (ru *run) dmarcFinding(ctx context.Context, what, domain string) (Finding, error) {
	publish := "publish " + suggestedDMARC(domain)
	recs, junk, err := ru.dmarcAt(ctx, domain)
	if err != nil {
		return Finding{}, err
	}
	at, org, parent := "_dmarc."+domain, false, ""
	if len(recs) == 0 && len(junk) == 0 {
		// RFC 7489 §6.6.3 step 3: fall back to the organizational domain.
		// Simplification: strip the leftmost label once instead of consulting
		// the Public Suffix List.
		if od := parentDomain(domain); od != "" {
			parent = " nor at _dmarc." + od
			recs, junk, err = ru.dmarcAt(ctx, od)
			if err != nil {
				return Finding{}, err
			}
			if len(recs) > 0 || len(junk) > 0 {
				at, org = "_dmarc."+od, true
			}
		}
	}
	switch {
	case len(recs) == 0 && len(junk) > 0:
		return newFail(what, "replace it with "+suggestedDMARC(domain),
			"the TXT record at %s does not start with v=DMARC1, so receivers ignore it (RFC 7489 §6.6.3): %q", at, abbrev(junk[0])), nil
	case len(recs) == 0:
		return newFail(what, publish,
			"no DMARC record at _dmarc.%s%s, so receivers apply no policy and large providers may reject or junk the mail", domain, parent), nil
	case len(recs) > 1:
		return newFail(what, "keep exactly one v=DMARC1 record at "+at,
			"%d DMARC records at %s: receivers then apply none (RFC 7489 §6.6.3)", len(recs), at), nil
	}
	tags, perr := parseTags(recs[0])
	if perr != nil {
		return newFail(what, "replace it with "+suggestedDMARC(domain), "record at %s does not parse: %v", at, perr), nil
	}
	policyTag := "p"
	if org {
		if _, ok := tagValue(tags, "sp"); ok {
			policyTag = "sp" // RFC 7489 §6.3: sp= governs subdomains
		}
	}
	p, ok := tagValue(tags, policyTag)
	if _, hasP := tagValue(tags, "p"); !hasP || !ok {
		return newFail(what, "replace it with "+suggestedDMARC(domain), "record at %s has no p= tag (RFC 7489 §6.3 requires it)", at), nil
	}
	where := at
	if org {
		where = fmt.Sprintf("%s (organizational domain; no record at _dmarc.%s)", at, domain)
	}
	if f, err := ru.externalReports(ctx, "DMARC reports "+domain, domain, tags); err != nil {
		return Finding{}, err
	} else if f != nil {
		ru.after = append(ru.after, *f) // after the policy finding
	}
	switch strings.ToLower(p) {
	case "quarantine", "reject":
		return newOK(what, "%s=%s at %s", policyTag, strings.ToLower(p), where), nil
	case "none":
		rua, _ := tagValue(tags, "rua")
		if rua == "" {
			rua = "mailto:postmaster@" + domain
		}
		tighter := txtRecord(at, "v=DMARC1; p=quarantine; rua="+rua)
		return newWarn(what, "read the rua reports; once they show your mail passing SPF or DKIM aligned, publish "+tighter+" and later p=reject",
			"%s=none at %s: monitoring only, forged mail in your name is still delivered", policyTag, where), nil
	default:
		return newFail(what, "replace it with "+suggestedDMARC(domain),
			"%s=%s at %s is not none, quarantine or reject (RFC 7489 §6.3)", policyTag, p, where), nil
	}
}

// dmarcAt returns the v=DMARC1 records and the other TXT records at
// _dmarc.domain.
func (ru *run) dmarcAt(ctx context.Context, domain string) (recs, junk []string, err error) {
	txts, err := ru.r.txt(ctx, "_dmarc."+domain)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range txts {
		t = strings.TrimSpace(t)
		if isDMARC(t) {
			recs = append(recs, t)
		} else {
			junk = append(junk, t)
		}
	}
	return recs, junk, nil
}

// isDMARC reports whether a record starts with the v=DMARC1 tag
// (RFC 7489 §6.4: it must be first).
func isDMARC(t string) bool {
	name, rest, ok := strings.Cut(t, "=")
	if !ok || strings.TrimSpace(name) != "v" {
		return false
	}
	v, _, _ := strings.Cut(rest, ";")
	return strings.TrimSpace(v) == "DMARC1"
}
