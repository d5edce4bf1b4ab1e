package dnscheck

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// resolveSmarthost looks up the smarthost's addresses once per Run; the
// SPF checks then ask whether each domain's policy authorizes them.
func (ru *run) resolveSmarthost(ctx context.Context) {
	h := bare(ru.in.SmarthostHost)
	if h == "" {
		return
	}
	what := "smarthost " + h
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		ru.smarthostAddrs = []netip.Addr{ip.Unmap()}
		return
	}
	ar, err := ru.r.addrs(ctx, h)
	switch {
	case err != nil:
		ru.lookupFailed(what, err)
	case len(ar.Addrs) == 0:
		ru.add(newFail(what, "check upstream.address in relayd.toml against your ISP's documentation",
			"%s does not resolve, so relayd cannot deliver and SPF authorization cannot be checked", h))
	default:
		ru.smarthostAddrs = ar.Addrs
	}
}

// checkSPF checks domain's SPF record (RFC 7208) and whether it authorizes
// the smarthost, through which all of relayd's mail leaves.
func (ru *run) checkSPF(ctx context.Context, domain string) {
	what := "SPF " + domain
	rec, err := spfRecordAt(ctx, ru.r, domain)
	switch {
	case errors.Is(err, errSPFMultiple):
		ru.add(newFail(what, "merge them into one v=spf1 record and delete the others",
			"%v: receivers return permerror (RFC 7208 §4.5) and treat the mail as unauthenticated", err))
		return
	case errors.Is(err, errSPFSyntax):
		ru.add(newFail(what, "fix the record; a valid example: "+ru.suggestSPF(ctx, domain),
			"record does not parse (%v): receivers return permerror", err))
		return
	case err != nil:
		ru.lookupFailed(what, err)
		return
	case rec == nil:
		ru.add(newFail(what, "publish "+ru.suggestSPF(ctx, domain),
			"%s has no SPF (v=spf1) record, so receivers cannot tell your mail from forgeries", domain))
		return
	}

	tree := analyzeSPF(ctx, ru.r, domain, rec)
	if tree.temp != nil {
		ru.lookupFailed(what, tree.temp)
		return
	}
	broken := false
	for _, p := range tree.problems {
		broken = true
		ru.add(newFail(what, "fix or remove the term that leads there",
			"%s: receivers return permerror (RFC 7208 §5.2, §6.1)", p))
	}
	if tree.lookups > spfLookupLimit {
		broken = true
		ru.add(newFail(what, "flatten the record: replace include:/a/mx terms by ip4:/ip6: ranges, or drop includes you no longer use, until at most 10 remain",
			"the record needs %s DNS lookups, more than the limit of 10: receivers return permerror (RFC 7208 §4.6.4)", lookupCount(tree.lookups)))
	}
	allOK := ru.checkSPFAll(ctx, what, domain, rec)
	if !broken && allOK {
		ru.add(newOK(what, "%q (%d of 10 DNS lookups)", rec.raw, tree.lookups))
	}
	if !broken {
		ru.checkSmarthostSPF(ctx, domain, rec)
	}
}

func lookupCount(n int) string {
	if n > 2*spfLookupLimit {
		return "more than 20"
	}
	return strconv.Itoa(n)
}

// checkSPFAll judges the policy's catch-all: the qualifier of "all" in the
// record, or in the record a redirect= chain ends in (RFC 7208 §5.1, §6.1).
func (ru *run) checkSPFAll(ctx context.Context, what, domain string, rec *spfRecord) bool {
	cur := rec
	for hops := 0; hops < spfLookupLimit; hops++ {
		if t, ok := cur.allTerm(); ok {
			switch t.qual {
			case '-', '~':
				return true
			case '?':
				ru.add(newWarn(what, "end the record with ~all, or -all once every sender is listed: "+txtRecord(domain, replaceAll(rec.raw, "~all")),
					"the policy ends in ?all (neutral): receivers treat mail from unlisted hosts as if there were no SPF"))
			default:
				ru.add(newFail(what, "replace it with -all (or ~all): "+txtRecord(domain, replaceAll(rec.raw, "-all")),
					"the policy ends in %s: it authorizes every host on the Internet to send as %s", string(t.qual)+"all", domain))
			}
			return false
		}
		if cur.redirect == "" || strings.Contains(cur.redirect, "%") {
			break
		}
		next, err := spfRecordAt(ctx, ru.r, cur.redirect)
		if err != nil || next == nil {
			return true // analyzeSPF reports a broken redirect
		}
		cur = next
	}
	ru.add(newWarn(what, "append ~all (or -all): "+txtRecord(domain, rec.raw+" ~all"),
		"the record has no all mechanism, so unlisted hosts get the default neutral (RFC 7208 §4.7)"))
	return false
}

// replaceAll returns raw with its all mechanism replaced by repl.
func replaceAll(raw, repl string) string {
	f := strings.Fields(raw)
	for i, t := range f {
		if strings.EqualFold(strings.TrimLeft(t, "+-~?"), "all") {
			f[i] = repl
		}
	}
	return strings.Join(f, " ")
}

// checkSmarthostSPF evaluates domain's policy for each smarthost address.
func (ru *run) checkSmarthostSPF(ctx context.Context, domain string, rec *spfRecord) {
	if len(ru.smarthostAddrs) == 0 {
		return
	}
	what := "SPF " + domain + " smarthost"
	host := bare(ru.in.SmarthostHost)
	var bad []string
	var notes []string
	for _, ip := range ru.smarthostAddrs {
		e := &spfEval{r: ru.r, ip: ip}
		res, err := e.checkHost(ctx, domain)
		notes = append(notes, e.notes...)
		if res == spfTemperror {
			ru.lookupFailed(what, err)
			return
		}
		if res != spfPass {
			bad = append(bad, ip.String()+" gets "+string(res))
		}
	}
	if len(bad) == 0 {
		ru.add(newOK(what, "%s (%s) is authorized (pass)", host, joinAddrs(ru.smarthostAddrs)))
		return
	}
	note := ""
	if len(notes) > 0 {
		note = " (note: " + strings.Join(dedupe(notes), "; ") + ")"
	}
	fix := "add include:<your ISP's SPF domain> (ask your ISP) before the all mechanism"
	if isp := ru.ispSPFDomain(ctx); isp != "" {
		fix = "add include:" + isp + " before the all mechanism: " + txtRecord(domain, insertTerm(rec.raw, "include:"+isp))
	} else {
		fix += ", or list the smarthost: " + txtRecord(domain, insertTerm(rec.raw, ipTerms(ru.smarthostAddrs)))
	}
	ru.add(newWarn(what, fix, "mail leaves through %s, but %s's SPF does not authorize it: %s%s", host, domain, strings.Join(bad, ", "), note))
}

// suggestSPF proposes a whole record for domain.
func (ru *run) suggestSPF(ctx context.Context, domain string) string {
	if isp := ru.ispSPFDomain(ctx); isp != "" {
		return txtRecord(domain, "v=spf1 include:"+isp+" -all")
	}
	if len(ru.smarthostAddrs) > 0 {
		return txtRecord(domain, "v=spf1 "+ipTerms(ru.smarthostAddrs)+" -all")
	}
	return txtRecord(domain, "v=spf1 include:<your ISP's SPF domain> -all")
}

// ispSPFDomain finds the SPF domain to include for the smarthost: the
// smarthost's own name or its parent, preferring one whose policy passes
// the smarthost's addresses. "" when neither publishes SPF.
func (ru *run) ispSPFDomain(ctx context.Context) string {
	if ru.ispSPF != nil {
		return *ru.ispSPF
	}
	found := ""
	host := bare(ru.in.SmarthostHost)
	for _, d := range []string{host, parentDomain(host)} {
		if d == "" {
			continue
		}
		rec, err := spfRecordAt(ctx, ru.r, d)
		if err != nil || rec == nil {
			continue
		}
		passes := len(ru.smarthostAddrs) > 0
		for _, ip := range ru.smarthostAddrs {
			e := &spfEval{r: ru.r, ip: ip}
			if res, _ := e.checkHost(ctx, d); res != spfPass {
				passes = false
			}
		}
		if passes {
			found = d
			break
		}
		if found == "" {
			found = d
		}
	}
	ru.ispSPF = &found
	return found
}

// insertTerm puts term before the record's all mechanism and redirect=
// modifier, or at the end.
func insertTerm(raw, term string) string {
	f := strings.Fields(raw)
	for i, t := range f {
		l := strings.ToLower(strings.TrimLeft(t, "+-~?"))
		if i > 0 && (l == "all" || strings.HasPrefix(l, "redirect=")) {
			return strings.Join(append(f[:i:i], append([]string{term}, f[i:]...)...), " ")
		}
	}
	return strings.Join(append(f, term), " ")
}

func ipTerms(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		if a.Is4() {
			s = append(s, "ip4:"+a.String())
		} else {
			s = append(s, "ip6:"+a.String())
		}
	}
	return strings.Join(s, " ")
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
