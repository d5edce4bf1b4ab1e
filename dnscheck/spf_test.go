package dnscheck

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseSPF(t *testing.T) {
	good := []string{
		"v=spf1 -all",
		"v=spf1",
		"V=SPF1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx a:x.test/24 mx:y.test//64 a/24//64 ~all",
		"v=spf1 include:_spf.google.com exists:%{i}.x.test ptr ?all exp=explain.test",
		"v=spf1 redirect=_spf.example.com",
	}
	for _, s := range good {
		if _, err := parseSPF(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{
		"v=spf10 -all",
		"v=spf1 ip4:300.1.1.1",
		"v=spf1 ip4:2001:db8::1",
		"v=spf1 ip6:192.0.2.1",
		"v=spf1 include",
		"v=spf1 a:",
		"v=spf1 a/33",
		"v=spf1 mx//129",
		"v=spf1 all/24",
		"v=spf1 foo:bar",
		"v=spf1 redirect=a.test redirect=b.test",
	}
	for _, s := range bad {
		if _, err := parseSPF(s); !errors.Is(err, errSPFSyntax) {
			t.Errorf("%q: want a syntax error, got %v", s, err)
		}
	}
	rec, _ := parseSPF("v=spf1 a:x.test/24//64 -mx//48 ~all")
	if a := rec.terms[0]; a.mech != "a" || a.arg != "x.test" || a.cidr4 != 24 || a.cidr6 != 64 {
		t.Errorf("a term parsed as %+v", a)
	}
	if m := rec.terms[1]; m.qual != '-' || m.arg != "" || m.cidr4 != -1 || m.cidr6 != 48 {
		t.Errorf("mx term parsed as %+v", m)
	}
}

// spfZone exercises each evaluated mechanism.
var spfZone = zone{
	"ip4.test":       {`ip4.test. 60 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`},
	"ip6.test":       {`ip6.test. 60 IN TXT "v=spf1 ip6:2001:db8:1::/48 -all"`},
	"a.test":         {`a.test. 60 IN TXT "v=spf1 a/24 -all"`, "a.test. 60 IN A 198.51.100.1"},
	"mx.test":        {`mx.test. 60 IN TXT "v=spf1 mx:mail.test ~all"`},
	"mail.test":      {"mail.test. 60 IN MX 10 mx.mail.test."},
	"mx.mail.test":   {"mx.mail.test. 60 IN A 198.51.100.7"},
	"inc.test":       {`inc.test. 60 IN TXT "v=spf1 include:ip4.test -all"`},
	"incfail.test":   {`incfail.test. 60 IN TXT "v=spf1 include:ip6.test ?all"`},
	"incnone.test":   {`incnone.test. 60 IN TXT "v=spf1 include:nothing.test -all"`},
	"redir.test":     {`redir.test. 60 IN TXT "v=spf1 ip4:203.0.113.1 redirect=ip4.test"`},
	"redirnone.test": {`redirnone.test. 60 IN TXT "v=spf1 redirect=nothing.test"`},
	"neutral.test":   {`neutral.test. 60 IN TXT "v=spf1 ip4:203.0.113.1"`},
	"exists.test":    {`exists.test. 60 IN TXT "v=spf1 exists:%{i}.bl.test ptr -all"`},
	"two.test":       {`two.test. 60 IN TXT "v=spf1 -all"`, `two.test. 60 IN TXT "v=spf1 +all"`},
	"loop.test":      {`loop.test. 60 IN TXT "v=spf1 include:loop.test -all"`},
	"many.test": {`many.test. 60 IN TXT "v=spf1 a:x1.test a:x2.test a:x3.test a:x4.test a:x5.test a:x6.test ` +
		`a:x7.test a:x8.test a:x9.test a:x10.test a:x11.test ip4:198.51.100.7 -all"`},
}

func TestSPFEvaluate(t *testing.T) {
	ts := startServer(t, spfZone)
	r := newResolver(ts.Addr, &dns.Client{Net: "udp", Timeout: 2 * time.Second})
	tests := []struct {
		domain, ip string
		want       spfResult
	}{
		{"ip4.test", "198.51.100.200", spfPass},
		{"ip4.test", "198.51.101.1", spfFail},
		{"ip4.test", "2001:db8:1::1", spfFail},
		{"ip6.test", "2001:db8:1:ffff::1", spfPass},
		{"ip6.test", "2001:db8:2::1", spfFail},
		{"a.test", "198.51.100.99", spfPass},
		{"a.test", "198.51.99.1", spfFail},
		{"mx.test", "198.51.100.7", spfPass},
		{"mx.test", "198.51.100.8", spfSoftfail},
		{"inc.test", "198.51.100.7", spfPass},
		{"incfail.test", "198.51.100.7", spfNeutral},
		{"incnone.test", "198.51.100.7", spfPermerror},
		{"redir.test", "198.51.100.7", spfPass},
		{"redir.test", "192.0.2.1", spfFail},
		{"redirnone.test", "192.0.2.1", spfPermerror},
		{"neutral.test", "192.0.2.1", spfNeutral},
		{"exists.test", "192.0.2.1", spfFail},
		{"two.test", "192.0.2.1", spfPermerror},
		{"nothing.test", "192.0.2.1", spfNone},
		{"loop.test", "192.0.2.1", spfPermerror},
		{"many.test", "198.51.100.7", spfPermerror},
	}
	for _, tc := range tests {
		e := &spfEval{r: r, ip: netip.MustParseAddr(tc.ip)}
		got, err := e.checkHost(context.Background(), tc.domain)
		if got != tc.want {
			t.Errorf("check_host(%s, %s) = %s (%v), want %s", tc.ip, tc.domain, got, err, tc.want)
		}
		if tc.domain == "exists.test" && len(e.notes) != 2 {
			t.Errorf("exists/ptr should leave notes, got %q", e.notes)
		}
	}
}

func TestAnalyzeSPF(t *testing.T) {
	ts := startServer(t, spfZone)
	r := newResolver(ts.Addr, &dns.Client{Net: "udp", Timeout: 2 * time.Second})
	for domain, want := range map[string]int{"ip4.test": 0, "inc.test": 1, "redir.test": 1, "many.test": 11, "mx.test": 1} {
		rec, err := spfRecordAt(context.Background(), r, domain)
		if err != nil {
			t.Fatal(err)
		}
		tr := analyzeSPF(context.Background(), r, domain, rec)
		if tr.lookups != want || len(tr.problems) != 0 {
			t.Errorf("%s: %d lookups %q, want %d", domain, tr.lookups, tr.problems, want)
		}
	}
	rec, _ := spfRecordAt(context.Background(), r, "loop.test")
	if tr := analyzeSPF(context.Background(), r, "loop.test", rec); len(tr.problems) != 1 || !strings.Contains(tr.problems[0], "loop") {
		t.Errorf("loop not found: %+v", tr)
	}
}

func TestTXTRecordSplitsAt255(t *testing.T) {
	p := "p=" + strings.Repeat("A", 600)
	rec := txtRecord("s._domainkey.example.com", "v=DKIM1; k=rsa; ", p)
	if !strings.HasPrefix(rec, `s._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=AAA`) || !strings.HasSuffix(rec, `" )`) {
		t.Fatalf("bad record %s", rec)
	}
	body := rec[strings.Index(rec, "(")+1 : strings.LastIndex(rec, ")")]
	joined := ""
	for _, s := range strings.Split(strings.TrimSpace(body), `" "`) {
		s = strings.Trim(s, `"`)
		if len(s) > 255 {
			t.Errorf("string of %d octets", len(s))
		}
		joined += s
	}
	if joined != "v=DKIM1; k=rsa; "+p {
		t.Errorf("strings do not join back to the value")
	}
	// The record must load in a zone file parser.
	rr, err := dns.NewRR(strings.NewReplacer("( ", "", " )", "").Replace(rec))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rr.(*dns.TXT).Txt, ""); got != "v=DKIM1; k=rsa; "+p {
		t.Errorf("parsed back to %q", got)
	}
	if one := txtRecord("example.com", "v=spf1 -all"); one != `example.com. IN TXT "v=spf1 -all"` {
		t.Errorf("single string: %s", one)
	}
}

func TestDMARCOrganizationalFallback(t *testing.T) {
	z := zone{
		"_dmarc.example.com": {`_dmarc.example.com. 60 IN TXT "v=DMARC1; p=reject; sp=none"`},
		"_dmarc.other.test":  {`_dmarc.other.test. 60 IN TXT "v=DMARC1; p=quarantine"`},
		"_dmarc.junk.test":   {`_dmarc.junk.test. 60 IN TXT "p=reject; v=DMARC1"`},
		"_dmarc.two.test":    {`_dmarc.two.test. 60 IN TXT "v=DMARC1; p=reject"`, `_dmarc.two.test. 60 IN TXT "v=DMARC1; p=none"`},
	}
	ts := startServer(t, z)
	ru := &run{r: newResolver(ts.Addr, &dns.Client{Net: "udp", Timeout: 2 * time.Second})}
	for _, tc := range []struct {
		domain  string
		level   Level
		contain string
	}{
		{"news.example.com", Warn, "sp=none at _dmarc.example.com (organizational domain"},
		{"news.other.test", OK, "p=quarantine at _dmarc.other.test (organizational domain"},
		{"junk.test", Fail, "does not start with v=DMARC1"},
		{"two.test", Fail, "2 DMARC records"},
	} {
		ru.out = nil
		ru.checkDMARC(context.Background(), tc.domain)
		if len(ru.out) != 1 || ru.out[0].Level != tc.level || !strings.Contains(ru.out[0].Finding, tc.contain) {
			t.Errorf("%s: got %v, want %s containing %q", tc.domain, ru.out, tc.level, tc.contain)
		}
	}
}
