package conf

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := testEnv(nil).load("")
	if err != nil {
		t.Fatalf("built-in defaults do not validate: %v", err)
	}
	want := defaults()
	want.Hostname = "relay.test.example"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("load(\"\") = %+v\nwant %+v", c, want)
	}
	if c.Hostname != "relay.test.example" || c.StateDir != "/var/lib/relayd" ||
		!reflect.DeepEqual(c.Listen.SMTP, []string{"127.0.0.1:25", "[::1]:25"}) ||
		!reflect.DeepEqual(c.Listen.RelayNetworks, []string{"127.0.0.0/8", "::1/128"}) ||
		c.Listen.MaxMessageBytes != 26214400 || c.Listen.MaxRecipients != 1000 ||
		c.Listen.IdleTimeout.Duration != 5*time.Minute || c.Listen.MaxConnections != 1000 ||
		c.Listen.MaxConnectionsPerIP != 50 ||
		c.Upstream.TLS != "starttls" || c.Upstream.Timeout.Duration != 2*time.Minute || !c.Upstream.Hold() ||
		c.Queue.MinBackoff.Duration != 5*time.Minute || c.Queue.MaxBackoff.Duration != time.Hour ||
		c.Queue.MaxAge.Duration != 5*24*time.Hour || c.Queue.DelayWarning.Duration != 4*time.Hour ||
		c.Queue.Concurrency != 4 || c.Queue.MinFreeBytes != 64<<20 ||
		c.Log.Format != "text" || c.Log.Level != "info" || c.Source != "" {
		t.Errorf("unexpected defaults: %+v", c)
	}
	// An empty file is the defaults too.
	if c2 := mustParse(t, testEnv(nil), ""); c2.Queue != c.Queue || c2.Hostname != c.Hostname {
		t.Errorf("empty file differs from defaults: %+v", c2)
	}
}

func TestFQDN(t *testing.T) {
	host := func(h string) func() (string, error) { return func() (string, error) { return h, nil } }
	for _, c := range []struct {
		name, host string
		r          fakeResolver
		want       string
	}{
		{"dotted", "mx.example.org", fakeResolver{}, "mx.example.org"},
		{"cname", "box", fakeResolver{cname: map[string]string{"box": "box.lan.example."}}, "box.lan.example"},
		{"reverse", "box", fakeResolver{
			hosts: map[string][]string{"box": {"192.0.2.7"}},
			addrs: map[string][]string{"192.0.2.7": {"other.example.", "box.example.net."}},
		}, "box.example.net"},
		{"unresolvable", "box", fakeResolver{}, "box"},
		{"empty", "", fakeResolver{}, "localhost"},
	} {
		e := testEnv(nil)
		e.hostname, e.resolver = host(c.host), c.r
		if got := e.fqdn(); got != c.want {
			t.Errorf("%s: fqdn() = %q, want %q", c.name, got, c.want)
		}
	}
	// The hostname is not looked up when the file sets it.
	e := testEnv(nil)
	e.hostname = func() (string, error) { t.Error("hostname looked up"); return "", nil }
	mustParse(t, e, `hostname = "mail.example.com"`)
}

func TestOverrides(t *testing.T) {
	c := mustParse(t, testEnv(nil), `
hostname = "mail.example.com"
[listen]
smtp = ["127.0.0.1:2525"]
relay_networks = ["10.1.2.3", "2001:db8::1", "192.168.1.77/24"]
[queue]
max_age = "1d12h"
[upstream]
address = "smtp.isp.example:465"
tls = "implicit"
`)
	if c.Hostname != "mail.example.com" || c.Queue.MaxAge.Duration != 36*time.Hour ||
		!reflect.DeepEqual(c.Listen.SMTP, []string{"127.0.0.1:2525"}) || c.Upstream.Hold() ||
		c.Queue.MinBackoff.Duration != 5*time.Minute || c.Source != "test.toml" {
		t.Errorf("overrides not applied: %+v", c)
	}
	wantNets := []string{"10.1.2.3/32", "2001:db8::1/128", "192.168.1.0/24"}
	if !reflect.DeepEqual(c.Listen.RelayNetworks, wantNets) {
		t.Errorf("relay_networks = %q, want %q", c.Listen.RelayNetworks, wantNets)
	}
	var got []string
	for _, p := range c.RelayNets() {
		got = append(got, p.String())
	}
	if !reflect.DeepEqual(got, wantNets) {
		t.Errorf("RelayNets() = %q, want %q", got, wantNets)
	}
}

func TestUnknownKeys(t *testing.T) {
	got := parseErrs(t, testEnv(nil), `
hostnme = "x.example"
[listen]
smtp = ["127.0.0.1:25"]
max_mesage_bytes = 10
[[users]]
name = "a"
password_hash = "$2y$12$SnYSRp99UK.Ph.YPwaVDQeTLPsEjefwyTGmAY/z4ybCZe6z4xB1Vu"
senders = ["*@example.com"]
colour = "blue"
[surprise]
a = 1
b.c = 2
`)
	wantLines(t, got,
		"/etc/relayd/relayd.toml: hostnme: unknown key",
		"/etc/relayd/relayd.toml: listen.max_mesage_bytes: unknown key",
		"/etc/relayd/relayd.toml: users[0].colour: unknown key",
		"/etc/relayd/relayd.toml: surprise: unknown key",
	)
}

func TestAllProblemsReported(t *testing.T) {
	got := parseErrs(t, testEnv(nil), `
hostname = "bad_name.example"
state_dir = "spool"
[listen]
smtp = ["127.0.0.1"]
submission = ["0.0.0.0:587"]
relay_networks = ["10.0.0.0/33"]
tls_cert = "/etc/cert.pem"
max_recipients = "many"
[[users]]
name = "a"
password_hash = "secret"
senders = ["*@example.com"]
[[users]]
name = "a"
password_hash = "$2y$12$short"
senders = []
[upstream]
address = "smtp.isp.example"
tls = "foo"
max_per_hour = -1
[queue]
max_age = "5x"
min_backoff = "2h"
concurrency = 100
[[dkim]]
domain = "example.com"
selector = "s 1"
key_file = ""
[[dkim]]
domain = "example.org"
selector = "s2"
key_file = "/k"
[[dkim]]
domain = "EXAMPLE.org"
selector = "s2"
key_file = "/k2"
[rewrite]
admin = "root"
[metrics]
listen = "localhost:http"
[log]
level = "loud"
`)
	f := "/etc/relayd/relayd.toml: "
	wantLines(t, got,
		f+"listen.max_recipients: must be an integer (line 9)",
		f+`queue.max_age: "5x" is not a duration (use s, m, h or d, e.g. "5d")`,
		f+`hostname: "bad_name.example" is not a valid DNS name`,
		f+`state_dir: "spool" is not an absolute path`,
		f+`listen.smtp[0]: "127.0.0.1" is not host:port (e.g. "127.0.0.1:25", "[::1]:25", "smtp.example.net:587")`,
		f+`listen.relay_networks[0]: "10.0.0.0/33" is neither a CIDR network (e.g. "192.168.1.0/24") nor an IP address`,
		f+"listen.tls_cert: tls_cert and tls_key must be set together",
		f+"listen.submission: requires listen.tls_cert and listen.tls_key (AUTH is only offered over TLS)",
		f+`users[0].password_hash: is not a bcrypt hash ($2a$, $2b$ or $2y$; e.g. htpasswd -nbBC 12 "" PASSWORD)`,
		f+`users[1].name: "a" is already used by users[0]`,
		f+"users[1].password_hash: is not a valid bcrypt hash: crypto/bcrypt: hashedSecret too short to be a bcrypted password",
		f+`users[1].senders: must list at least one envelope sender pattern, e.g. "*@example.com"`,
		f+`upstream.tls: "foo" is not one of starttls, implicit, none`,
		f+`upstream.address: "smtp.isp.example" is not host:port (e.g. "127.0.0.1:25", "[::1]:25", "smtp.example.net:587")`,
		f+"upstream.max_per_hour: must be 0 (no limit) or more",
		f+"queue.max_backoff: 1h is less than queue.min_backoff (2h)",
		f+"queue.concurrency: 100 is not from 1 to 64",
		f+`dkim[0].selector: "s 1" is not a valid selector (letters, digits, hyphens, dots)`,
		f+"dkim[0].key_file: must not be empty (create one with: relayd dkim keygen)",
		f+`dkim[2]: domain "EXAMPLE.org" with selector "s2" is already configured in dkim[1]`,
		f+`rewrite.admin: "root" is not an address of the form local@domain`,
		f+`metrics.listen: "localhost:http": port "http" is not a number from 0 to 65535`,
		f+`log.level: "loud" is not one of debug, info, warn, error`,
	)
}

func TestSyntaxAndTypeErrors(t *testing.T) {
	got := parseErrs(t, testEnv(nil), "hostname = \"a.example\"\nstate_dir = = 1\n[queue]\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "/etc/relayd/relayd.toml: line 2: ") {
		t.Errorf("syntax error = %q, want one problem on line 2", got)
	}
	got = parseErrs(t, testEnv(nil), "listen = 5\nusers = 3\ndkim = [1, {domain = \"example.com\", key_file = \"/k\"}]\n[upstream]\ntimeout = 30\n")
	wantLines(t, got,
		"/etc/relayd/relayd.toml: listen: must be a table, not an integer",
		"/etc/relayd/relayd.toml: dkim[0]: must be a table, not an integer",
		// dkim[1] keeps its index; the zero dkim[0] is not validated.
		"/etc/relayd/relayd.toml: dkim[1].selector: must not be empty",
		"/etc/relayd/relayd.toml: users: must be an array of tables ([[users]]) (line 2)",
		`/etc/relayd/relayd.toml: upstream.timeout: "30" is not a duration (use s, m, h or d, e.g. "5d")`,
	)
}

// A mistyped key is reported once: not again as unknown (for its inline
// table's keys) nor by validation (for the zero value it keeps).
func TestMistypedKeyReportedOnce(t *testing.T) {
	got := parseErrs(t, testEnv(nil), "hostname = {a = 1}\n[listen]\nsmtp = [{b=2}]\n[queue]\nmax_age = 7\n")
	wantLines(t, got,
		"/etc/relayd/relayd.toml: hostname: must be a string (line 1)",
		"/etc/relayd/relayd.toml: listen.smtp: must be an array of strings (line 3)",
		`/etc/relayd/relayd.toml: queue.max_age: "7" is not a duration (use s, m, h or d, e.g. "5d")`,
	)
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relayd.toml")
	if err := os.WriteFile(path, []byte("[queue]\nmax_age = \"5x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := testEnv(nil).load(path)
	var errs Errors
	if !errors.As(err, &errs) || err.Error() != path+`: queue.max_age: "5x" is not a duration (use s, m, h or d, e.g. "5d")` {
		t.Errorf("load = %v", err)
	}
	var p *Problem
	if !errors.As(err, &p) || p.Key != "queue.max_age" || p.File != path {
		t.Errorf("errors.As(*Problem) = %+v", p)
	}
	_, err = testEnv(nil).load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &errs) {
		t.Errorf("missing file: %v", err)
	}
}
