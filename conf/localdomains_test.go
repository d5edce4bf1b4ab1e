package conf

import "testing"

func TestLocalDomainsSyntax(t *testing.T) {
	for d, want := range map[string]bool{
		"vm": true, "vm.example.": true, "Host.Example.COM": true, "[127.0.0.1]": true,
		"[IPv6:::1]": true, "[ipv6:2001:db8::1]": true,
		"": false, "[::1]": false, "[IPv6:127.0.0.1]": false, "[127.0.0.1": false, "bad_name": false, "a b": false,
	} {
		if got := validLocalDomain(d); got != want {
			t.Errorf("validLocalDomain(%q) = %v, want %v", d, got, want)
		}
	}
}

func TestLocalDomainsKey(t *testing.T) {
	got := parseErrs(t, testEnv(nil), "hostname = \"a.example\"\n[rewrite]\nlocal_domains = [\"vm\", \"[127.0.0.1]\", \"no way\"]\n")
	wantLines(t, got, `/etc/relayd/relayd.toml: rewrite.local_domains[2]: "no way" is neither a DNS name nor an address literal such as [192.0.2.1]`)
	c, err := testEnv(nil).parse([]byte("hostname = \"a.example\"\n[rewrite]\nlocal_domains = [\"vm\"]\n"), "x.toml")
	if err != nil || len(c.Rewrite.LocalDomains) != 1 || c.Rewrite.LocalDomains[0] != "vm" {
		t.Fatalf("parse = %+v, %v", c.Rewrite, err)
	}
}
