package dnscheck

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	keysOnce        sync.Once
	rsaPub, rsaPub2 string
	edPub           string
)

// testKeys generates real DKIM public keys (RSA-2048 and Ed25519) once.
func testKeys(t *testing.T) (string, string, string) {
	t.Helper()
	keysOnce.Do(func() {
		gen := func() string {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
			if err != nil {
				panic(err)
			}
			return base64.StdEncoding.EncodeToString(der)
		}
		rsaPub, rsaPub2 = gen(), gen()
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		edPub = base64.StdEncoding.EncodeToString(pub)
	})
	return rsaPub, rsaPub2, edPub
}

// splitTXT renders s as several quoted strings of at most n octets.
func splitTXT(s string, n int) string {
	var parts []string
	for len(s) > n {
		parts = append(parts, `"`+s[:n]+`"`)
		s = s[n:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

const (
	hostIP      = "192.0.2.25"
	smarthostIP = "198.51.100.7"
)

// goodZone is a correctly configured domain: Run must find nothing wrong.
func goodZone(t *testing.T) zone {
	rsaKey, _, edKey := testKeys(t)
	return zone{
		"relay.example.com":            {"relay.example.com. 300 IN A " + hostIP},
		"25.2.0.192.in-addr.arpa":      {"25.2.0.192.in-addr.arpa. 300 IN PTR relay.example.com."},
		"smtp.isp.test":                {"smtp.isp.test. 300 IN A " + smarthostIP},
		"isp.test":                     {`isp.test. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`},
		"mx1.example.com":              {"mx1.example.com. 300 IN A 192.0.2.30", "mx1.example.com. 300 IN AAAA 2001:db8::30"},
		"_dmarc.example.com":           {`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"`},
		"e2026._domainkey.example.com": {`e2026._domainkey.example.com. 300 IN TXT "v=DKIM1; k=ed25519; p=` + edKey + `"`},
		"s2026._domainkey.example.com": {`s2026._domainkey.example.com. 300 IN TXT "v=DKIM1; k=rsa; " ` + splitTXT("p="+rsaKey, 200)},
		"example.com": {
			"example.com. 300 IN MX 10 mx1.example.com.",
			`example.com. 300 IN TXT "google-site-verification=abc123"`,
			// the SPF record split in two strings, joined without a space
			`example.com. 300 IN TXT "v=spf1 mx include:isp" ".test -all"`,
		},
	}
}

func goodInput(t *testing.T) Input {
	rsaKey, _, edKey := testKeys(t)
	return Input{
		Hostname:  "relay.example.com",
		PublicIPs: []netip.Addr{netip.MustParseAddr(hostIP)},
		Domains:   []string{"example.com", "Example.COM."},
		DKIM: []DKIMKey{
			{Domain: "example.com", Selector: "s2026", Algorithm: "rsa", PublicKey: rsaKey},
			{Domain: "example.com", Selector: "e2026", Algorithm: "ed25519", PublicKey: edKey},
		},
		SmarthostHost: "smtp.isp.test",
		Now:           time.Now(),
	}
}

func runCheck(t *testing.T, z zone, in Input) []Finding {
	t.Helper()
	ts := startServer(t, z)
	c := &Checker{Resolver: ts.Addr, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Run(ctx, in)
}

type want struct {
	level Level
	what  string
}

func problems(fs []Finding) []want {
	var out []want
	for _, f := range fs {
		if f.Level != OK {
			out = append(out, want{f.Level, f.What})
		}
	}
	return out
}

func dump(fs []Finding) string {
	var b bytes.Buffer
	Format(&b, fs)
	return b.String()
}

func TestGoodZoneHasNoProblems(t *testing.T) {
	fs := runCheck(t, goodZone(t), goodInput(t))
	if p := problems(fs); len(p) != 0 {
		t.Fatalf("good zone has problems %v:\n%s", p, dump(fs))
	}
	// Every check ran once: HELO, rDNS, 2 DKIM, SPF, SPF smarthost, DMARC,
	// MX (the duplicate domain was folded).
	wantWhats := []string{
		"HELO relay.example.com", "rDNS 192.0.2.25",
		"DKIM s2026._domainkey.example.com", "DKIM e2026._domainkey.example.com",
		"SPF example.com", "SPF example.com smarthost", "DMARC example.com", "MX example.com",
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.What)
	}
	if !slices.Equal(got, wantWhats) {
		t.Fatalf("findings %q, want %q:\n%s", got, wantWhats, dump(fs))
	}
}

func TestMisconfigurations(t *testing.T) {
	rsaKey, rsaKey2, _ := testKeys(t)
	const dk = "s2026._domainkey.example.com"
	spf := func(recs ...string) func(z zone) {
		return func(z zone) {
			lines := []string{"example.com. 300 IN MX 10 mx1.example.com."}
			for _, r := range recs {
				lines = append(lines, `example.com. 300 IN TXT "`+r+`"`)
			}
			z["example.com"] = lines
		}
	}
	set := func(owner string, lines ...string) func(z zone) {
		return func(z zone) {
			if len(lines) == 0 {
				delete(z, owner)
				return
			}
			z[owner] = lines
		}
	}
	dkimTXT := func(body string) func(z zone) {
		return set(dk, dk+`. 300 IN TXT `+body)
	}
	tests := []struct {
		name    string
		zone    []func(z zone)
		input   func(in *Input)
		want    []want
		contain string // expected in the Finding or Fix of the first problem
	}{
		{name: "missing SPF", zone: []func(zone){spf("google-site-verification=abc123")},
			want: []want{{Fail, "SPF example.com"}}, contain: `example.com. IN TXT "v=spf1 include:isp.test -all"`},
		{name: "two SPF records", zone: []func(zone){spf("v=spf1 include:isp.test -all", "v=spf1 mx -all")},
			want: []want{{Fail, "SPF example.com"}}, contain: "permerror"},
		{name: "+all", zone: []func(zone){spf("v=spf1 include:isp.test +all")},
			want: []want{{Fail, "SPF example.com"}}, contain: "v=spf1 include:isp.test -all"},
		{name: "bare all", zone: []func(zone){spf("v=spf1 include:isp.test all")},
			want: []want{{Fail, "SPF example.com"}}},
		{name: "?all", zone: []func(zone){spf("v=spf1 include:isp.test ?all")},
			want: []want{{Warn, "SPF example.com"}}, contain: "~all"},
		{name: "no all", zone: []func(zone){spf("v=spf1 include:isp.test")},
			want: []want{{Warn, "SPF example.com"}}, contain: "neutral"},
		{name: "smarthost not in SPF via include chain",
			zone: []func(zone){
				spf("v=spf1 include:_spf.example.com -all"),
				set("_spf.example.com", `_spf.example.com. 300 IN TXT "v=spf1 include:_spf2.example.com ip6:2001:db8::/32 ~all"`),
				set("_spf2.example.com", `_spf2.example.com. 300 IN TXT "v=spf1 ip4:198.51.101.0/24 a:mx1.example.com/24 mx -all"`),
			},
			want: []want{{Warn, "SPF example.com smarthost"}}, contain: "include:isp.test"},
		{name: "SPF over 10 lookups",
			zone: func() []func(zone) {
				fs := []func(zone){spf("v=spf1 include:a.spf.example.com include:b.spf.example.com include:c.spf.example.com include:d.spf.example.com -all")}
				for _, l := range []string{"a", "b", "c", "d"} {
					n := l + ".spf.example.com"
					fs = append(fs, set(n, n+`. 300 IN TXT "v=spf1 a mx ip4:198.51.100.7 -all"`))
				}
				return fs
			}(),
			want: []want{{Fail, "SPF example.com"}}, contain: "12 DNS lookups"},
		{name: "SPF include without record", zone: []func(zone){spf("v=spf1 include:nospf.example.com -all")},
			want: []want{{Fail, "SPF example.com"}}, contain: "has no SPF record"},
		{name: "missing DKIM", zone: []func(zone){set(dk)},
			want: []want{{Fail, "DKIM " + dk}}, contain: dk + `. IN TXT ( "v=DKIM1; k=rsa; " "p=`},
		{name: "DKIM key mismatch", zone: []func(zone){dkimTXT(splitTXT("v=DKIM1; k=rsa; p="+rsaKey2, 255))},
			want: []want{{Fail, "DKIM " + dk}}, contain: "does not match the private key"},
		{name: "DKIM truncated record", zone: []func(zone){dkimTXT(splitTXT("v=DKIM1; k=rsa; p="+rsaKey[:240], 255))},
			want: []want{{Fail, "DKIM " + dk}}, contain: "truncated"},
		{name: "DKIM wrong k=", zone: []func(zone){dkimTXT(splitTXT("v=DKIM1; k=ed25519; p="+rsaKey, 255))},
			want: []want{{Fail, "DKIM " + dk}}, contain: "k=ed25519"},
		{name: "DKIM revoked", zone: []func(zone){dkimTXT(`"v=DKIM1; k=rsa; p="`)},
			want: []want{{Fail, "DKIM " + dk}}, contain: "revoked"},
		{name: "DKIM v= not first", zone: []func(zone){dkimTXT(splitTXT("k=rsa; v=DKIM1; p="+rsaKey, 255))},
			want: []want{{Fail, "DKIM " + dk}}, contain: "first tag"},
		{name: "DKIM without v= is fine", zone: []func(zone){dkimTXT(splitTXT("p="+rsaKey, 255))}},
		{name: "missing DMARC", zone: []func(zone){set("_dmarc.example.com")},
			want: []want{{Fail, "DMARC example.com"}}, contain: `_dmarc.example.com. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"`},
		{name: "DMARC p=none", zone: []func(zone){set("_dmarc.example.com", `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; rua=mailto:d@example.com"`)},
			want: []want{{Warn, "DMARC example.com"}}, contain: "p=quarantine; rua=mailto:d@example.com"},
		{name: "DMARC without p=", zone: []func(zone){set("_dmarc.example.com", `_dmarc.example.com. 300 IN TXT "v=DMARC1; rua=mailto:d@example.com"`)},
			want: []want{{Fail, "DMARC example.com"}}},
		{name: "MX CNAME", zone: []func(zone){
			func(z zone) { z["example.com"][0] = "example.com. 300 IN MX 10 mail.example.com." },
			set("mail.example.com", "mail.example.com. 300 IN CNAME mx1.example.com."),
		}, want: []want{{Fail, "MX example.com"}}, contain: "example.com. IN MX 10 mx1.example.com."},
		{name: "MX target without address", zone: []func(zone){set("mx1.example.com")},
			want: []want{{Fail, "MX example.com"}}},
		{name: "no MX", zone: []func(zone){func(z zone) { z["example.com"] = z["example.com"][1:] }},
			want: []want{{Warn, "MX example.com"}}},
		{name: "HELO through CNAME", zone: []func(zone){
			set("relay.example.com", "relay.example.com. 300 IN CNAME host1.example.com."),
			set("host1.example.com", "host1.example.com. 300 IN A "+hostIP),
		}, want: []want{{Fail, "HELO relay.example.com"}}, contain: "violation of standards"},
		{name: "HELO not resolving", zone: []func(zone){set("relay.example.com")},
			want: []want{{Fail, "HELO relay.example.com"}}, contain: "relay.example.com. IN A " + hostIP},
		{name: "PTR missing", zone: []func(zone){set("25.2.0.192.in-addr.arpa")},
			want: []want{{Fail, "rDNS " + hostIP}}, contain: "25.2.0.192.in-addr.arpa. IN PTR relay.example.com."},
		{name: "PTR mismatch", zone: []func(zone){
			set("25.2.0.192.in-addr.arpa", "25.2.0.192.in-addr.arpa. 300 IN PTR host-25.pool.isp.test."),
			set("host-25.pool.isp.test", "host-25.pool.isp.test. 300 IN A "+hostIP),
		}, want: []want{{Warn, "rDNS " + hostIP}}, contain: "host-25.pool.isp.test"},
		{name: "forward-confirmed rDNS fails", zone: []func(zone){set("relay.example.com", "relay.example.com. 300 IN A 192.0.2.99")},
			want: []want{{Fail, "rDNS " + hostIP}}, contain: "forward-confirmed"},
		{name: "not FQDN", input: func(in *Input) { in.Hostname = "relay"; in.PublicIPs = nil },
			want: []want{{Warn, "HELO relay"}}, contain: "fully qualified"},
		{name: "smarthost does not resolve", input: func(in *Input) { in.SmarthostHost = "smtp.nowhere.test" },
			want: []want{{Fail, "smarthost smtp.nowhere.test"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			z := goodZone(t).Clone()
			for _, f := range tc.zone {
				f(z)
			}
			in := goodInput(t)
			if tc.input != nil {
				tc.input(&in)
			}
			fs := runCheck(t, z, in)
			got := problems(fs)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("problems %v, want %v:\n%s", got, tc.want, dump(fs))
			}
			for _, f := range fs {
				if f.Level != OK && f.Fix == "" {
					t.Errorf("%s has no Fix", f)
				}
				if f.Level == OK && f.Fix != "" {
					t.Errorf("OK finding has a Fix: %s", f)
				}
			}
			if tc.contain != "" {
				var first Finding
				for _, f := range fs {
					if f.Level != OK {
						first = f
						break
					}
				}
				if !strings.Contains(first.Finding+" Fix: "+first.Fix, tc.contain) {
					t.Errorf("first problem %q does not mention %q", first, tc.contain)
				}
			}
		})
	}
}

func TestJSONOutputParses(t *testing.T) {
	z := goodZone(t)
	delete(z, "_dmarc.example.com")
	fs := runCheck(t, z, goodInput(t))
	var b bytes.Buffer
	if err := FormatJSON(&b, fs); err != nil {
		t.Fatal(err)
	}
	var back []Finding
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse: %v\n%s", err, b.String())
	}
	if !slices.Equal(back, fs) {
		t.Fatalf("round trip changed findings:\n%v\n%v", back, fs)
	}
	var raw []map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw[0]["level"] != "OK" || raw[0]["what"] == nil {
		t.Fatalf("unexpected JSON keys: %v", raw[0])
	}
	b.Reset()
	if err := FormatJSON(&b, nil); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Fatalf("empty findings render as %q, %v", b.String(), err)
	}
}

func TestFindingString(t *testing.T) {
	f := Finding{Level: Fail, What: "SPF example.com", Finding: "no record.", Fix: "publish X"}
	if got, want := f.String(), "FAIL SPF example.com: no record. Fix: publish X"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	f = Finding{Level: OK, What: "MX example.com", Finding: "mx1.example.com resolves", Fix: "ignored"}
	if got, want := f.String(), "OK MX example.com: mx1.example.com resolves."; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var b bytes.Buffer
	Format(&b, []Finding{f, f})
	if strings.Count(b.String(), "\n") != 2 {
		t.Errorf("Format wrote %q", b.String())
	}
	if Failed([]Finding{f}) || !Failed([]Finding{f, {Level: Fail}}) {
		t.Error("Failed is wrong")
	}
}

func TestClock(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		skew time.Duration
		want Level
	}{{0, OK}, {59 * time.Second, OK}, {-60 * time.Second, OK}, {61 * time.Second, Warn}, {-10 * time.Minute, Warn}} {
		f := CheckClock(now.Add(tc.skew), now)
		if f.Level != tc.want {
			t.Errorf("skew %v: %s, want %s", tc.skew, f, tc.want)
		}
		if f.Level == Warn && !strings.Contains(f.Fix, "timedatectl set-ntp true") {
			t.Errorf("skew %v: fix lacks the NTP hint: %s", tc.skew, f)
		}
	}
	if f := CheckClock(now.Add(-2*time.Minute), now); !strings.Contains(f.Finding, "behind") {
		t.Errorf("direction missing: %s", f)
	}
}

func ExampleFinding_String() {
	fmt.Println(Finding{Level: Warn, What: "DMARC example.com", Finding: "p=none", Fix: "publish p=quarantine"})
	// Output: WARN DMARC example.com: p=none. Fix: publish p=quarantine
}
