package dnscheck

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// runRefusing runs the checks against a server authoritative for the
// zones of z only: REFUSED for anything else, the root included.
func runRefusing(t *testing.T, z zone, in Input) []Finding {
	t.Helper()
	zones := []string{"example.com.", "isp.test.", "in-addr.arpa.", "example.net."}
	ts := startServer(t, z, func(s *testServer) {
		s.Refuse = func(q dns.Question) bool {
			for _, zn := range zones {
				if dns.IsSubDomain(zn, dns.CanonicalName(q.Name)) {
					return false
				}
			}
			return true
		}
	})
	c := &Checker{Resolver: ts.Addr, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Run(ctx, in)
}

// An authoritative-only server (the admin's own primary, REFUSED for the
// root) is not "did not answer": the checks run through it and find what
// they find through a recursive resolver, with one WARN saying so.
func TestAuthoritativeOnlyResolver(t *testing.T) {
	for _, z := range []zone{goodZone(t), func() zone {
		z := goodZone(t).Clone()
		z["_dmarc.example.com"] = []string{`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none"`}
		delete(z, "e2026._domainkey.example.com")
		return z
	}()} {
		rec := runCheck(t, z, goodInput(t))
		auth := runRefusing(t, z, goodInput(t))
		if len(auth) == 0 || auth[0].Level != Warn || auth[0].What != "resolver" || !strings.Contains(auth[0].Finding, "authoritative answers only") {
			t.Fatalf("no authoritative-only warning first:\n%s", dump(auth))
		}
		if !slices.Equal(auth[1:], rec) {
			t.Errorf("through the authoritative server:\n%s\nthrough a recursive one:\n%s", dump(auth[1:]), dump(rec))
		}
	}
}

// A resolver that refuses everything is still a failure, and one that
// does not answer at all too.
func TestRefusingEverything(t *testing.T) {
	ts := startServer(t, goodZone(t), func(s *testServer) { s.Refuse = func(dns.Question) bool { return true } })
	c := &Checker{Resolver: ts.Addr, Timeout: 2 * time.Second}
	fs := c.Run(context.Background(), goodInput(t))
	if len(fs) != 1 || fs[0].Level != Fail || fs[0].What != "resolver" {
		t.Errorf("got:\n%s", dump(fs))
	}
}

// RFC 7489 §7.1: reports to another organization's address need its
// consent record; without it, a WARN; with it, nothing.
func TestDMARCExternalReports(t *testing.T) {
	z := goodZone(t).Clone()
	z["_dmarc.example.com"] = []string{`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com,mailto:reports@dmarc.vendor.test!10m; ruf=mailto:f@other.test"`}
	fs := runCheck(t, z, goodInput(t))
	var warns []Finding
	for _, f := range fs {
		if f.What == "DMARC reports example.com" {
			warns = append(warns, f)
		}
	}
	if len(warns) != 1 || warns[0].Level != Warn || !strings.Contains(warns[0].Finding, "example.com._report._dmarc.dmarc.vendor.test") {
		t.Fatalf("findings:\n%s", dump(fs))
	}
	z["example.com._report._dmarc.dmarc.vendor.test"] = []string{`example.com._report._dmarc.dmarc.vendor.test. 300 IN TXT "v=DMARC1"`}
	z["example.com._report._dmarc.other.test"] = []string{`example.com._report._dmarc.other.test. 300 IN TXT "v=DMARC1;"`}
	if p := problems(runCheck(t, z, goodInput(t))); len(p) != 0 {
		t.Errorf("authorized reports still flagged: %v", p)
	}
}
