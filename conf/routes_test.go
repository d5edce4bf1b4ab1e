package conf

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayd/internal/tlsmode"
)

func TestSmarthostsAndRoutes(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "ses.secret", "ses-pass\n")
	c := mustParse(t, testEnv(nil), `
[upstream]
address = "smtp.isp.example:587"

[[smarthost]]
name = "ses"
address = "email-smtp.eu-west-1.amazonaws.com:587"
username = "AKIA"
password_file = "`+pw+`"
from = "noreply@shop.example"
null_sender = "postmaster@shop.example"
max_per_minute = 10

[[route]]
sender_domain = ["Shop.Example."]
smarthost = "ses"

[[route]]
recipient_domain = ["partner.example"]
smarthost = "default"
`)
	if len(c.Smarthosts) != 1 || len(c.Routes) != 2 {
		t.Fatalf("smarthosts %v routes %v", c.Smarthosts, c.Routes)
	}
	s := c.Smarthosts[0]
	// [upstream]'s defaults apply to a [[smarthost]] too.
	if s.TLS != tlsmode.StartTLS || s.Timeout.Duration != 2*time.Minute || s.Password != "ses-pass" || s.MaxPerMinute != 10 ||
		s.From != "noreply@shop.example" || s.NullSender != "postmaster@shop.example" {
		t.Errorf("smarthost = %#v", s)
	}
	if strings.Contains(s.String(), "ses-pass") || !strings.Contains(s.String(), "ses") {
		t.Errorf("String() = %s", s)
	}
	if got := c.Routes[0].SenderDomain; len(got) != 1 || got[0] != "shop.example" {
		t.Errorf("domains not normalised: %q", got)
	}
	if d, ok := c.Smarthost("default"); !ok || d.Address != "smtp.isp.example:587" {
		t.Errorf("Smarthost(default) = %v %v", d, ok)
	}
	if len(c.Warnings()) != 0 {
		t.Errorf("warnings %q", c.Warnings())
	}
}

func TestSmarthostCredential(t *testing.T) {
	creds := t.TempDir()
	writeFile(t, creds, "smarthost-m365", "cred-pass\n")
	c := mustParse(t, testEnv(map[string]string{"CREDENTIALS_DIRECTORY": creds}), `
[[smarthost]]
name = "m365"
address = "smtp.office365.com:587"
username = "relay@example.com"
[[route]]
from_domain = ["example.com"]
smarthost = "m365"
`)
	if c.Smarthosts[0].Password != "cred-pass" {
		t.Errorf("password %q", c.Smarthosts[0].Password)
	}
	if _, err := filepath.Abs(creds); err != nil {
		t.Fatal(err)
	}
}

// Every problem is listed, each with its key.
func TestRouteProblems(t *testing.T) {
	got := parseErrs(t, testEnv(nil), `
[[smarthost]]
name = "a"
address = "a.example:587"
tls = "none"
bogus = 1

[[smarthost]]
name = "a"
address = "b.example:587"
from = "not an address"

[[smarthost]]
name = "default"

[[route]]
sender_domain = ["shop.example"]
smarthost = "a"

[[route]]
sender_domain = ["eu.shop.example", "SHOP.example"]
smarthost = "a"

[[route]]
smarthost = "a"

[[route]]
recipient_domain = ["x..example"]
smarthost = "nope"

[[route]]
sender_domain = ["shop.example"]
recipient_domain = ["partner.example"]
`)
	wantLines(t, got,
		`/etc/relayd/relayd.toml: smarthost[0].bogus: unknown key`,
		`/etc/relayd/relayd.toml: smarthost[0].tls: "none": refusing to send credentials and mail in clear to a non-loopback smarthost (a.example)`,
		`/etc/relayd/relayd.toml: smarthost[1].name: "a" is already used by smarthost[0]`,
		`/etc/relayd/relayd.toml: smarthost[1].from: "not an address" is not an address of the form local@domain`,
		`/etc/relayd/relayd.toml: smarthost[2].name: "default" is reserved for [upstream], the default route`,
		`/etc/relayd/relayd.toml: smarthost[2].address: must be set (host:port of the smarthost)`,
		`/etc/relayd/relayd.toml: route[1]: can never match: route[0] (smarthost "a") comes first and matches all its mail`,
		`/etc/relayd/relayd.toml: route[2]: has no matcher: set sender_domain, from_domain or recipient_domain`,
		`/etc/relayd/relayd.toml: route[3].smarthost: "nope" is not the name of a [[smarthost]] (nor "default"); known: "a", "a", "default"`,
		`/etc/relayd/relayd.toml: route[3].recipient_domain[0]: "x..example" is not a domain name`,
		`/etc/relayd/relayd.toml: route[4].smarthost: must be set: a [[smarthost]] name, or "default" for [upstream]`,
		`/etc/relayd/relayd.toml: route[4]: can never match: route[0] (smarthost "a") comes first and matches all its mail`,
	)
}
