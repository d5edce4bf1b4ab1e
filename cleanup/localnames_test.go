package cleanup

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relayd/envelope"
)

// testHost is a machine called "vm" (FQDN vm.lan.example) whose
// /etc/mailname says mailname, with loopback, a LAN address and IPv6.
func testHost(t *testing.T, mailname string) Host {
	path := filepath.Join(t.TempDir(), "mailname")
	if mailname != "" {
		if err := os.WriteFile(path, []byte(mailname), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	return Host{
		Hostname: func() (string, error) { return "vm", nil },
		FQDN:     func() string { return "vm.lan.example." },
		ReadFile: os.ReadFile,
		Mailname: path,
		Addrs: func() ([]net.Addr, error) {
			return []net.Addr{cidr("127.0.0.1/8"), cidr("192.0.2.10/24"), cidr("::1/128"),
				cidr("2001:db8::5/64"), &net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}}, nil
		},
	}
}

func TestLocalNamesTable(t *testing.T) {
	domains := testHost(t, "mail.example.net\n").LocalDomains([]string{"Extra.Example."}, []string{"example.com"})
	c := &Config{Hostname: "relay.example.com", LocalDomains: domains}
	c.local = newLocalSet(c.Hostname, c.LocalDomains)
	for addr, want := range map[string]bool{
		// no domain
		"root": true, "cron": true,
		// the configured hostname, localhost
		"root@relay.example.com": true, "root@RELAY.Example.com.": true, "root@localhost": true,
		"root@LOCALHOST.localdomain": true, "root@localhost.": true,
		// the OS host name, its FQDN, /etc/mailname, rewrite.local_domains
		"root@vm": true, "root@VM": true, "root@vm.": true, "root@vm.lan.example": true,
		"root@Vm.Lan.Example.": true, "root@mail.example.net": true, "root@extra.example": true,
		// address literals of the host
		"root@[127.0.0.1]": true, "root@[127.0.0.53]": true, "root@[192.0.2.10]": true,
		"root@[IPv6:::1]": true, "root@[ipv6:2001:DB8::5]": true, "root@[IPv6:fe80::1]": true,
		"root@[IPv6:::ffff:127.0.0.1]": true,
		// not this host
		"root@example.com": false, "bob@example.org": false, "root@vm.example.org": false,
		"root@vmx": false, "root@lan.example": false, "root@[192.0.2.11]": false,
		"root@[IPv6:2001:db8::6]": false, "root@[::1]": false, "root@[IPv6:127.0.0.1]": false,
		`"root@vm"@example.com`: false,
	} {
		if got := c.isLocal(addr); got != want {
			t.Errorf("isLocal(%q) = %v, want %v (local domains %q)", addr, got, want, domains)
		}
	}
}

// An /etc/mailname naming a domain that receives real mail (rewrite.admin's,
// rewrite.sender's, a DKIM key's) does not make that domain local, and a
// missing or odd mailname is ignored.
func TestLocalNamesMailDomainsSkipped(t *testing.T) {
	for mailname, want := range map[string]bool{"Example.COM.\n": false, "": false, "two words\n": false, "other.example\nsecond line": true} {
		domains := testHost(t, mailname).LocalDomains(nil, []string{"example.com"})
		c := &Config{Hostname: "relay.example.com", LocalDomains: domains}
		name := strings.ToLower(strings.TrimSuffix(strings.Fields(mailname + " x")[0], "."))
		if got := c.isLocal("bob@" + name); got != want {
			t.Errorf("mailname %q: isLocal(bob@%s) = %v, want %v (%q)", mailname, name, got, want, domains)
		}
	}
	noHost := Host{Hostname: func() (string, error) { return "", errors.New("no name") }}
	if d := noHost.LocalDomains(nil, nil); len(d) != 0 {
		t.Errorf("LocalDomains without host facts = %q", d)
	}
}

// Envelope and header alike: root@vm as recipient goes to rewrite.admin, as
// sender becomes rewrite.sender, and its From keeps the display name while
// the address becomes rewrite.sender, so rewrite.sender's DKIM key signs it.
func TestOSHostNameIsLocal(t *testing.T) {
	q := newQueue(t)
	fs := &fakeSigner{}
	c := newCleanup(t, q, func(c *Config) {
		c.Signer = fs
		c.LocalDomains = testHost(t, "").LocalDomains(nil, nil)
	})
	for in, want := range map[string]string{"root@vm": "admin@example.com", "ROOT@VM.": "admin@example.com",
		"root@[127.0.0.1]": "admin@example.com", "root@vm.lan.example": "admin@example.com", "bob@example.org": "bob@example.org"} {
		if got, err := c.Recipient(in); err != nil || got != want {
			t.Errorf("Recipient(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"root@vm": "noreply@example.com", "www-data@[IPv6:::1]": "noreply@example.com"} {
		if got, err := c.Sender(in); err != nil || got != want {
			t.Errorf("Sender(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	sub := smtpSub("admin@example.com")
	sub.RemoteIP, sub.LocalUID, sub.Origin = netip0(), 0, envelope.FromLocal
	sub.Envelope.From = "noreply@example.com"
	id, err := c.Submit(context.Background(), sub, strings.NewReader("From: root <root@vm>\nTo: root@vm\nSubject: mdadm\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	if !strings.Contains(got, "From: \"root\" <noreply@example.com>\r\n") {
		t.Errorf("From root@vm not rewritten:\n%s", got)
	}
	if !strings.HasPrefix(got, "DKIM-Signature: v=1; d=example.com\r\n") {
		t.Errorf("not signed for rewrite.sender's domain:\n%s", got)
	}
}

// The envelope records that the sender stands in for a local one.
func TestLocalSenderRecorded(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	for from, want := range map[string]bool{"noreply@example.com": true, "NoReply@Example.com": true, "app@example.com": false} {
		sub := smtpSub("bob@example.org")
		sub.Envelope.From = from
		id, err := c.Submit(context.Background(), sub, strings.NewReader("Subject: s\n\nb\n"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.LocalSender != want {
			t.Errorf("sender %s: LocalSender = %v, want %v", from, m.LocalSender, want)
		}
	}
}
