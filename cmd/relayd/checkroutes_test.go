package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"relayd/internal/dnstest"
	"relayd/internal/smtptest"
)

// relayd check probes every [[smarthost]] (TLS, certificate, login) as it
// probes [upstream], and names the one that fails.
func TestCheckEverySmarthost(t *testing.T) {
	users := map[string]string{"relayuser": "s3cret pass"}
	good := smtptest.New(t, smtptest.Options{RequireTLS: true, Users: users})
	bad := smtptest.New(t, smtptest.Options{RequireTLS: true, Users: users, Faults: smtptest.Faults{AuthFail: true}})
	dir := t.TempDir()
	extra := fmt.Sprintf("[[smarthost]]\nname = \"ses\"\naddress = %q\nca_file = %q\nusername = \"relayuser\"\npassword_file = %q\ntimeout = \"5s\"\n"+
		"[[route]]\nsender_domain = [\"shop.example\"]\nsmarthost = \"ses\"\n",
		bad.Addr(), bad.CA().WritePEM(t), filepath.Join(dir, "smarthost.secret"))
	cfg := checkSetup{dir: dir, upstream: smarthostUpstream(t, dir, good.Addr(), good.CA().WritePEM(t), ""), extra: extra}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns")
	fails := lines(out, "FAIL")
	if code != 1 || len(fails) != 1 || !strings.HasPrefix(fails[0], "FAIL smarthost "+bad.Addr()+": 535") {
		t.Fatalf("exit %d, want 1 and one FAIL for the ses smarthost:\n%s", code, out)
	}
	// The fix names the ses smarthost's own keys, not [upstream]'s.
	if !strings.Contains(fails[0], "smarthost[0].username") || strings.Contains(fails[0], "upstream.") {
		t.Errorf("the ses smarthost's FAIL should name smarthost[0].username, not upstream.*:\n%s", fails[0])
	}
	if !strings.Contains(out, "OK smarthost "+good.Addr()+": ") {
		t.Errorf("no OK line for [upstream]:\n%s", out)
	}
	if good.Logins() != 1 || bad.AuthAttempts() != 1 {
		t.Errorf("logins: upstream %d, ses %d attempts; want 1 each", good.Logins(), bad.AuthAttempts())
	}
}

// The DNS checks run for each route's domains against that route's
// smarthost: SPF of shop.example must allow the ses smarthost.
func TestCheckRouteDomainsDNS(t *testing.T) {
	dir := t.TempDir()
	table, txt, _ := dkimSetup(t, dir)
	extra := table + "[rewrite]\nsender = \"noreply@example.com\"\n" +
		"[[smarthost]]\nname = \"ses\"\naddress = \"smtp.ses.test:587\"\n" +
		"[[route]]\nsender_domain = [\"shop.example\"]\nsmarthost = \"ses\"\n"
	cfg := checkSetup{dir: dir, upstream: smarthostUpstream(t, dir, "smtp.isp.test:587", smtptest.NewCA(t).WritePEM(t), ""), extra: extra}.write(t)
	zone := goodZone(txt)
	zone["smtp.ses.test"] = []string{"smtp.ses.test. 300 IN A 203.0.113.9"}
	zone["shop.example"] = []string{`shop.example. 300 IN TXT "v=spf1 include:isp.test -all"`} // not the ses smarthost
	ts := dnstest.Start(t, zone)
	out, _ := check(t, "--config", cfg, "--no-smarthost", "--resolver", ts.Addr)
	if !strings.Contains(out, "ses: SPF shop.example smarthost") {
		t.Fatalf("no SPF finding for the route's domain against its smarthost:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ses: SPF shop.example smarthost") && strings.HasPrefix(l, "OK ") {
			t.Errorf("SPF that does not allow the smarthost passed: %s", l)
		}
	}
}
