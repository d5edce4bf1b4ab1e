package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// spfLookupLimit is the RFC 7208 §4.6.4 cap on DNS-querying terms
// (include, a, mx, ptr, exists, redirect) in one check_host evaluation.
const spfLookupLimit = 10

// spfMXLimit is the RFC 7208 §4.6.4 cap on MX records looked at by one mx
// mechanism.
const spfMXLimit = 10

// spfResult is an RFC 7208 §2.6 result.
type spfResult string

const (
	spfPass      spfResult = "pass"
	spfFail      spfResult = "fail"
	spfSoftfail  spfResult = "softfail"
	spfNeutral   spfResult = "neutral"
	spfNone      spfResult = "none"
	spfPermerror spfResult = "permerror"
	spfTemperror spfResult = "temperror"
)

// spfTerm is one directive (mechanism with qualifier) of a record.
type spfTerm struct {
	qual   byte   // '+', '-', '~' or '?'
	mech   string // lower case: all, include, a, mx, ip4, ip6, ptr, exists
	arg    string // domain-spec ("" means the current domain) or address
	prefix netip.Prefix
	cidr4  int // -1 when absent
	cidr6  int // -1 when absent
}

// queries reports whether the term costs a DNS lookup (RFC 7208 §4.6.4).
func (t spfTerm) queries() bool {
	switch t.mech {
	case "include", "a", "mx", "ptr", "exists":
		return true
	}
	return false
}

// spfRecord is a parsed "v=spf1" record.
type spfRecord struct {
	raw      string
	terms    []spfTerm
	redirect string // redirect= modifier, "" if none
}

// allTerm returns the record's all mechanism, if any.
func (r *spfRecord) allTerm() (spfTerm, bool) {
	for _, t := range r.terms {
		if t.mech == "all" {
			return t, true
		}
	}
	return spfTerm{}, false
}

// isSPF reports whether a TXT string is an SPF record: "v=spf1" followed by
// a space or the end (RFC 7208 §4.5).
func isSPF(txt string) bool {
	if len(txt) < 6 || !strings.EqualFold(txt[:6], "v=spf1") {
		return false
	}
	return len(txt) == 6 || txt[6] == ' '
}

var errSPFSyntax = errors.New("SPF syntax error")

// parseSPF parses a record per RFC 7208 §4.6.1 and §5-6.
func parseSPF(raw string) (*spfRecord, error) {
	if !isSPF(raw) {
		return nil, fmt.Errorf("%w: does not start with v=spf1", errSPFSyntax)
	}
	rec := &spfRecord{raw: raw}
	for _, f := range strings.Fields(raw[6:]) {
		if i := strings.IndexAny(f, "=:/"); i > 0 && f[i] == '=' {
			name, val := strings.ToLower(f[:i]), f[i+1:]
			switch name {
			case "redirect":
				if rec.redirect != "" {
					return nil, fmt.Errorf("%w: redirect= appears twice (RFC 7208 §6)", errSPFSyntax)
				}
				if val == "" {
					return nil, fmt.Errorf("%w: empty redirect=", errSPFSyntax)
				}
				rec.redirect = val
			default:
				// exp= and unknown modifiers are ignored (RFC 7208 §6).
			}
			continue
		}
		t, err := parseSPFTerm(f)
		if err != nil {
			return nil, err
		}
		rec.terms = append(rec.terms, t)
	}
	return rec, nil
}

func parseSPFTerm(f string) (spfTerm, error) {
	t := spfTerm{qual: '+', cidr4: -1, cidr6: -1}
	if strings.ContainsRune("+-~?", rune(f[0])) {
		t.qual = f[0]
		f = f[1:]
	}
	name, rest := f, ""
	if i := strings.IndexAny(f, ":/"); i >= 0 {
		name, rest = f[:i], f[i:]
	}
	t.mech = strings.ToLower(name)
	switch t.mech {
	case "all":
		if rest != "" {
			return t, fmt.Errorf("%w: %q", errSPFSyntax, f)
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(rest, ":") {
			return t, fmt.Errorf("%w: %q needs an address", errSPFSyntax, f)
		}
		s := rest[1:]
		if !strings.Contains(s, "/") {
			if t.mech == "ip4" {
				s += "/32"
			} else {
				s += "/128"
			}
		}
		p, err := netip.ParsePrefix(s)
		if err != nil || (t.mech == "ip4") != p.Addr().Is4() {
			return t, fmt.Errorf("%w: bad address in %q", errSPFSyntax, f)
		}
		t.arg, t.prefix = rest[1:], p.Masked()
	case "include", "exists":
		if !strings.HasPrefix(rest, ":") || len(rest) < 2 {
			return t, fmt.Errorf("%w: %q needs a domain", errSPFSyntax, f)
		}
		t.arg = rest[1:]
	case "ptr":
		t.arg = strings.TrimPrefix(rest, ":")
	case "a", "mx":
		spec := rest
		if i := strings.Index(spec, "/"); i >= 0 {
			cidr := spec[i:]
			spec = spec[:i]
			var err error
			if t.cidr4, t.cidr6, err = parseDualCIDR(cidr); err != nil {
				return t, fmt.Errorf("%w: %q: %w", errSPFSyntax, f, err)
			}
		}
		t.arg = strings.TrimPrefix(spec, ":")
		if strings.HasPrefix(spec, ":") && t.arg == "" {
			return t, fmt.Errorf("%w: %q has an empty domain", errSPFSyntax, f)
		}
	default:
		return t, fmt.Errorf("%w: unknown mechanism %q (RFC 7208 §5)", errSPFSyntax, f)
	}
	return t, nil
}

// parseDualCIDR parses "/24", "//64" or "/24//64" (RFC 7208 §5.6).
func parseDualCIDR(s string) (c4, c6 int, err error) {
	c4, c6 = -1, -1
	v4, v6, dual := strings.Cut(s, "//")
	if strings.HasPrefix(s, "//") {
		v4, v6, dual = "", s[2:], true
	}
	if v4 != "" {
		if c4, err = strconv.Atoi(strings.TrimPrefix(v4, "/")); err != nil || c4 < 0 || c4 > 32 || !strings.HasPrefix(v4, "/") {
			return -1, -1, fmt.Errorf("bad ip4 CIDR length %q", v4)
		}
	}
	if dual {
		if c6, err = strconv.Atoi(v6); err != nil || c6 < 0 || c6 > 128 {
			return -1, -1, fmt.Errorf("bad ip6 CIDR length %q", v6)
		}
	}
	return c4, c6, nil
}

// spfRecordAt fetches the single SPF record at domain. It returns (nil,
// nil) when there is none, and an error wrapping errSPFMultiple when there
// are several (RFC 7208 §4.5: permerror).
func spfRecordAt(ctx context.Context, r *resolver, domain string) (*spfRecord, error) {
	txts, err := r.txt(ctx, domain)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, t := range txts {
		if isSPF(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return parseSPF(found[0])
	default:
		return nil, fmt.Errorf("%w: %d records at %s", errSPFMultiple, len(found), domain)
	}
}

var errSPFMultiple = errors.New("more than one v=spf1 record")
