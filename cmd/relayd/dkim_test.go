package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relayd/internal/sysexits"
)

func TestDKIMKeygen(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := dkimKeygen([]string{"--domain", "Example.COM", "--selector", "s2026"}, filepath.Join(dir, "dkim"), &out, &errb)
	if code != sysexits.OK {
		t.Fatalf("exit %d, stderr: %s", code, errb.String())
	}
	key := filepath.Join(dir, "dkim", "example.com.s2026.pem")
	st, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %04o, want 0600", st.Mode().Perm())
	}
	if !strings.Contains(out.String(), `s2026._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=`) ||
		!strings.Contains(out.String(), "[[dkim]]") || !strings.Contains(out.String(), key) {
		t.Errorf("stdout lacks the record or next steps:\n%s", out.String())
	}
	before, _ := os.ReadFile(key)
	firstOut := bytes.Clone(out.Bytes())

	// A second run refuses to overwrite and leaves the key alone.
	out.Reset()
	errb.Reset()
	code = dkimKeygen([]string{"--domain", "example.com", "--selector", "s2026", "--algorithm", "ed25519"}, filepath.Join(dir, "dkim"), &out, &errb)
	if code != sysexits.CantCreate || !strings.Contains(errb.String(), "already exists") {
		t.Errorf("overwrite: exit %d, stderr %q", code, errb.String())
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("existing key changed")
	}

	// The dns subcommand prints the same record from a config naming the key.
	cfg := filepath.Join(dir, "relayd.toml")
	toml := "state_dir = " + quote(filepath.Join(dir, "spool")) + "\n[[dkim]]\ndomain = \"example.com\"\nselector = \"s2026\"\nkey_file = " + quote(key) + "\n"
	if err := os.WriteFile(cfg, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	var dns bytes.Buffer
	errb.Reset()
	if code := runDKIM([]string{"dns", "--config", cfg}, &dns, &errb); code != sysexits.OK {
		t.Fatalf("dns: exit %d, stderr %s", code, errb.String())
	}
	record := ""
	for _, l := range strings.Split(string(firstOut), "\n") {
		if strings.HasPrefix(l, "s2026._domainkey.") {
			record = l
		}
	}
	if record == "" || !strings.Contains(dns.String(), record+"\n") {
		t.Errorf("dns output does not repeat the keygen record %q:\n%s", record, dns.String())
	}

	// A config whose key is unreadable by mode is reported, exit 1.
	os.Chmod(key, 0o644)
	dns.Reset()
	errb.Reset()
	if code := runDKIM([]string{"dns", "--config", cfg}, &dns, &errb); code != exitFailure ||
		!strings.Contains(errb.String(), "dkim[0].key_file") || !strings.Contains(errb.String(), "chmod 600") {
		t.Errorf("loose key: exit %d, stderr %q", code, errb.String())
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `\`, `\\`) + `"` }

func TestDKIMKeygenEd25519AndOut(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "sub", "ed.pem")
	var out, errb bytes.Buffer
	code := runDKIM([]string{"keygen", "--domain", "example.com", "--selector", "ed", "--algorithm", "ed25519", "--out", keyPath}, &out, &errb)
	if code != sysexits.OK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `ed._domainkey.example.com. IN TXT ( "v=DKIM1; k=ed25519; " "p=`) {
		t.Errorf("stdout:\n%s", out.String())
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st, err)
	}
}

func TestDKIMUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"keygen"},
		{"keygen", "--domain", "example.com"},
		{"keygen", "--selector", "s"},
		{"keygen", "--domain", "example.com", "--selector", "s", "--algorithm", "dsa"},
		{"keygen", "--domain", "example.com", "--selector", "s", "--bits", "1024"},
		{"keygen", "--domain", "example.com", "--selector", "s", "--algorithm", "ed25519", "--bits", "2048"},
		{"keygen", "--domain", "example.com", "--selector", "s", "--nope"},
		{"keygen", "--domain", "example.com", "--selector", "s", "extra"},
		{"dns", "extra"},
	} {
		var out, errb bytes.Buffer
		if code := runDKIM(append(args, "--out", filepath.Join(dir, "k.pem")), &out, &errb); len(args) > 0 && args[0] == "keygen" && code != sysexits.Usage {
			t.Errorf("%q: exit %d, want %d", args, code, sysexits.Usage)
		}
		var out2, errb2 bytes.Buffer
		if code := runDKIM(args, &out2, &errb2); code != sysexits.Usage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, sysexits.Usage, errb2.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "k.pem")); err == nil {
		t.Error("a usage error still wrote a key")
	}
	// An unwritable location is EX_CANTCREAT.
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o600)
	var out, errb bytes.Buffer
	if code := runDKIM([]string{"keygen", "--domain", "example.com", "--selector", "s", "--algorithm", "ed25519", "--out", filepath.Join(blocker, "k.pem")}, &out, &errb); code != sysexits.CantCreate {
		t.Errorf("unwritable: exit %d, want %d (%s)", code, sysexits.CantCreate, errb.String())
	}
}
