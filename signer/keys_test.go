package signer

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyFormats(t *testing.T) {
	for _, c := range []struct {
		file, alg string
		bits      int
	}{
		{"rsa2048.pkcs1.pem", AlgRSA, 2048},
		{"rsa2048.pkcs8.pem", AlgRSA, 2048},
		{"ed25519.pem", AlgEd25519, 256},
	} {
		s := mustLoad(t, entry{"Example.COM.", "sel", c.file})
		ks := s.Keys()
		if len(ks) != 1 {
			t.Fatalf("%s: %d keys", c.file, len(ks))
		}
		k := ks[0]
		if k.Algorithm != c.alg || k.Bits != c.bits || k.Domain != "example.com" || k.Selector != "sel" {
			t.Errorf("%s: got %+v", c.file, k)
		}
		if k.DNSName() != "sel._domainkey.example.com." {
			t.Errorf("DNSName = %q", k.DNSName())
		}
		if want := "v=DKIM1; k=" + c.alg + "; p="; !strings.HasPrefix(k.TXT(), want) {
			t.Errorf("TXT = %q, want prefix %q", k.TXT(), want)
		}
	}
	// Ed25519 p= is the raw 32-byte key (RFC 8463 §4.2): 44 base64 chars.
	k := mustLoad(t, entry{"example.com", "ed", "ed25519.pem"}).Keys()[0]
	if p := strings.TrimPrefix(k.TXT(), "v=DKIM1; k=ed25519; p="); len(p) != 44 {
		t.Errorf("ed25519 p= has %d chars, want 44: %q", len(p), p)
	}
}

func TestLoadWarnsWeakRSA(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, errs := Load([]Entry{{Domain: "example.com", Selector: "old", KeyFile: keyCopy(t, "rsa1024.pkcs8.pem")}},
		Options{Logger: log})
	if len(errs) != 0 || len(s.Keys()) != 1 {
		t.Fatalf("1024-bit key: errs %v", errs)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "bits=1024") {
		t.Errorf("no warning for a 1024-bit key: %q", logs.String())
	}
}

// Every bad entry is reported, each naming its config key and file, and the
// domains concerned are refused by Sign rather than sent unsigned.
func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	loose := keyCopy(t, "ed25519.pem")
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "garbage.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	pub := filepath.Join(dir, "pub.pem")
	data, _ := os.ReadFile("testdata/rsa2048.pub.pem")
	os.WriteFile(pub, data, 0o600)
	missing := filepath.Join(dir, "missing.pem")
	entries := []Entry{
		{Domain: "good.example", Selector: "s", KeyFile: keyCopy(t, "ed25519.pem")},
		{Domain: "loose.example", Selector: "s", KeyFile: loose},
		{Domain: "weak.example", Selector: "s", KeyFile: keyCopy(t, "rsa512.pkcs1.pem")},
		{Domain: "garbage.example", Selector: "s", KeyFile: notPEM},
		{Domain: "pub.example", Selector: "s", KeyFile: pub},
		{Domain: "missing.example", Selector: "s", KeyFile: missing},
		{Domain: "ecdsa.example", Selector: "s", KeyFile: keyCopy(t, "ecdsa.pem")},
		{Domain: "", Selector: "", KeyFile: keyCopy(t, "ed25519.pem")},
	}
	s, errs := Load(entries, Options{})
	want := []struct{ idx, needle string }{
		{"dkim[1].key_file", "key is readable by group/others (mode 0644); fix: chmod 600 " + loose},
		{"dkim[2].key_file", "512 bits"},
		{"dkim[3].key_file", "no PEM block"},
		{"dkim[4].key_file", `"PUBLIC KEY", not a private key`},
		{"dkim[5].key_file", "no such file"},
		{"dkim[6].key_file", "EC PRIVATE KEY"},
		{"dkim[7].domain", "empty"},
		{"dkim[7].selector", "empty"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(errs), len(want), errs)
	}
	for i, w := range want {
		msg := errs[i].Error()
		if !strings.HasPrefix(msg, w.idx+":") || !strings.Contains(msg, w.needle) {
			t.Errorf("error %d = %q, want %s ... %q", i, msg, w.idx, w.needle)
		}
		if w.idx != "dkim[7].domain" && w.idx != "dkim[7].selector" && !strings.Contains(msg, entries[i+1].KeyFile) {
			t.Errorf("error %d does not name the file: %q", i, msg)
		}
	}
	if ks := s.Keys(); len(ks) != 1 || ks[0].Domain != "good.example" {
		t.Errorf("Keys() = %+v, want only good.example", ks)
	}
	if w, _, err := s.Sign("good.example"); err != nil || w == nil {
		t.Errorf("good domain: %v", err)
	}
	for _, d := range []string{"loose.example", "sub.weak.example", "missing.example"} {
		if w, f, err := s.Sign(d); err == nil || w != nil || f != nil {
			t.Errorf("Sign(%q) with a broken key: err=%v, want an error and no signer", d, err)
		}
	}
}
