package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// spfEval is one RFC 7208 check_host evaluation (§4): a small, honest
// subset. exists, ptr and macro-bearing domain-specs never match and leave
// a note; everything else follows the RFC, including the §4.6.4 limit.
type spfEval struct {
	r       *resolver
	ip      netip.Addr
	lookups int
	notes   []string
}

var errSPFLimit = errors.New("more than 10 DNS-querying SPF terms (RFC 7208 §4.6.4)")

// checkHost evaluates domain's policy for e.ip. The error explains a
// permerror or temperror.
func (e *spfEval) checkHost(ctx context.Context, domain string) (spfResult, error) {
	rec, err := spfRecordAt(ctx, e.r, domain)
	switch {
	case errors.Is(err, errSPFMultiple), errors.Is(err, errSPFSyntax):
		return spfPermerror, err
	case err != nil:
		return spfTemperror, err
	case rec == nil:
		return spfNone, nil
	}
	for _, t := range rec.terms {
		if t.queries() {
			e.lookups++
			if e.lookups > spfLookupLimit {
				return spfPermerror, errSPFLimit
			}
		}
		match, res, err := e.match(ctx, domain, t)
		if err != nil {
			return res, err
		}
		if match {
			return qualResult(t.qual), nil
		}
	}
	if rec.redirect != "" {
		if _, hasAll := rec.allTerm(); hasAll {
			return spfNeutral, nil // unreachable: all always matches
		}
		e.lookups++
		if e.lookups > spfLookupLimit {
			return spfPermerror, errSPFLimit
		}
		if strings.Contains(rec.redirect, "%") {
			e.notes = append(e.notes, "redirect="+rec.redirect+" uses macros, not evaluated")
			return spfNeutral, nil
		}
		res, err := e.checkHost(ctx, rec.redirect)
		if res == spfNone {
			// RFC 7208 §6.1: a redirect to a domain without SPF is permerror.
			return spfPermerror, fmt.Errorf("redirect=%s has no SPF record", rec.redirect)
		}
		return res, err
	}
	return spfNeutral, nil // RFC 7208 §4.7
}

// match reports whether term t matches; a non-empty result with an error
// aborts the evaluation with that result.
func (e *spfEval) match(ctx context.Context, domain string, t spfTerm) (bool, spfResult, error) {
	target := t.arg
	if target == "" {
		target = domain
	}
	if strings.Contains(target, "%") && t.mech != "ip4" && t.mech != "ip6" {
		e.notes = append(e.notes, t.mech+":"+t.arg+" uses macros, not evaluated")
		return false, "", nil
	}
	switch t.mech {
	case "all":
		return true, "", nil
	case "ip4", "ip6":
		return t.prefix.Contains(e.ip.Unmap()), "", nil
	case "include":
		res, err := e.checkHost(ctx, target)
		switch res {
		case spfPass:
			return true, "", nil
		case spfFail, spfSoftfail, spfNeutral:
			return false, "", nil
		case spfTemperror:
			return false, spfTemperror, err
		case spfNone:
			// RFC 7208 §5.2: include of a domain without SPF is permerror.
			return false, spfPermerror, fmt.Errorf("include:%s has no SPF record", target)
		default:
			return false, spfPermerror, err
		}
	case "a":
		ar, err := e.r.addrs(ctx, target)
		if err != nil {
			return false, spfTemperror, err
		}
		return e.matchAddrs(ar.Addrs, t), "", nil
	case "mx":
		mxs, err := e.r.mx(ctx, target)
		if err != nil {
			return false, spfTemperror, err
		}
		if len(mxs) > spfMXLimit {
			return false, spfPermerror, fmt.Errorf("mx:%s has %d MX records, more than %d (RFC 7208 §4.6.4)", target, len(mxs), spfMXLimit)
		}
		for _, mx := range mxs {
			ar, err := e.r.addrs(ctx, mx.Mx)
			if err != nil {
				return false, spfTemperror, err
			}
			if e.matchAddrs(ar.Addrs, t) {
				return true, "", nil
			}
		}
		return false, "", nil
	default: // ptr, exists
		e.notes = append(e.notes, t.mech+" is not evaluated by this check (treated as not matching)")
		return false, "", nil
	}
}

func (e *spfEval) matchAddrs(addrs []netip.Addr, t spfTerm) bool {
	ip := e.ip.Unmap()
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != ip.Is4() {
			continue
		}
		bits := a.BitLen()
		if a.Is4() && t.cidr4 >= 0 {
			bits = t.cidr4
		} else if a.Is6() && t.cidr6 >= 0 {
			bits = t.cidr6
		}
		if p, err := a.Prefix(bits); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}

func qualResult(q byte) spfResult {
	switch q {
	case '-':
		return spfFail
	case '~':
		return spfSoftfail
	case '?':
		return spfNeutral
	}
	return spfPass
}

// spfTree is the static shape of a domain's SPF policy: every record
// reachable through include and redirect, independent of any IP.
type spfTree struct {
	lookups  int      // DNS-querying terms over the whole tree
	problems []string // permerrors found on the way (missing include targets, ...)
	temp     error    // a lookup that failed, if any
}

// analyzeSPF walks the include/redirect tree of rec (the record of domain)
// and counts DNS-querying terms, as a receiver would in the worst case (no
// earlier match). The walk is bounded by the visited set and by stopping
// well past the limit.
func analyzeSPF(ctx context.Context, r *resolver, domain string, rec *spfRecord) spfTree {
	var tr spfTree
	onPath := map[string]bool{strings.ToLower(domain): true}
	var walk func(domain string, rec *spfRecord)
	walk = func(domain string, rec *spfRecord) {
		var next []string
		for _, t := range rec.terms {
			if t.queries() {
				tr.lookups++
			}
			if t.mech == "include" && !strings.Contains(t.arg, "%") {
				next = append(next, t.arg)
			}
		}
		if _, hasAll := rec.allTerm(); !hasAll && rec.redirect != "" {
			tr.lookups++
			if !strings.Contains(rec.redirect, "%") {
				next = append(next, rec.redirect)
			}
		}
		for _, d := range next {
			if tr.lookups > 2*spfLookupLimit || tr.temp != nil {
				return
			}
			key := strings.ToLower(strings.TrimSuffix(d, "."))
			if onPath[key] {
				tr.problems = append(tr.problems, fmt.Sprintf("%s includes itself (a loop)", d))
				continue
			}
			sub, err := spfRecordAt(ctx, r, d)
			switch {
			case errors.Is(err, errSPFMultiple), errors.Is(err, errSPFSyntax):
				tr.problems = append(tr.problems, fmt.Sprintf("%s: %v", d, err))
			case err != nil:
				tr.temp = err
			case sub == nil:
				tr.problems = append(tr.problems, fmt.Sprintf("%s (included or redirected to by %s) has no SPF record", d, domain))
			default:
				onPath[key] = true
				walk(d, sub)
				delete(onPath, key)
			}
		}
	}
	walk(domain, rec)
	return tr
}
