package signer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	for _, c := range []struct {
		alg  string
		bits int
	}{{AlgRSA, 0}, {AlgRSA, 3072}, {AlgEd25519, 0}} {
		pemBytes, txt, err := GenerateKey(c.alg, c.bits)
		if err != nil {
			t.Fatalf("%s/%d: %v", c.alg, c.bits, err)
		}
		if !strings.HasPrefix(string(pemBytes), "-----BEGIN PRIVATE KEY-----\n") {
			t.Errorf("%s: not PKCS#8 PEM", c.alg)
		}
		k, err := parseKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		if k.TXT() != txt || !strings.HasPrefix(txt, "v=DKIM1; k="+c.alg+"; p=") {
			t.Errorf("%s: TXT %q", c.alg, txt)
		}
		if want := max(c.bits, 2048); c.alg == AlgRSA && k.Bits != want {
			t.Errorf("RSA bits = %d, want %d", k.Bits, want)
		}
	}
	for _, c := range []struct {
		alg  string
		bits int
	}{{AlgRSA, 1024}, {AlgRSA, 8192}, {AlgEd25519, 2048}, {"dsa", 0}} {
		if _, _, err := GenerateKey(c.alg, c.bits); err == nil {
			t.Errorf("GenerateKey(%q, %d) succeeded", c.alg, c.bits)
		}
	}
}

func TestWriteKeyFile(t *testing.T) {
	old := syscall.Umask(0) // a permissive umask must not widen the mode
	defer syscall.Umask(old)
	pemBytes, _, err := GenerateKey(AlgEd25519, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "example.com.s1.pem")
	if err := WriteKeyFile(p, pemBytes); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	if got, _ := os.ReadFile(p); string(got) != string(pemBytes) {
		t.Error("content differs")
	}
	// The written key loads (the mode check passes).
	if _, err := loadKeyFile(p, nil); err != nil {
		t.Errorf("load written key: %v", err)
	}
	other, _, _ := GenerateKey(AlgEd25519, 0)
	if err := WriteKeyFile(p, other); !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwrite: err = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(p); string(got) != string(pemBytes) {
		t.Error("existing key was modified")
	}
}

func TestZoneRecord(t *testing.T) {
	for _, bits := range []int{2048, 4096} {
		_, txt, err := GenerateKey(AlgRSA, bits)
		if err != nil {
			t.Fatal(err)
		}
		z := ZoneRecord("Example.com", "s2026", txt)
		prefix := `s2026._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=`
		if !strings.HasPrefix(z, prefix) || !strings.HasSuffix(z, `" )`) {
			t.Fatalf("%d: %s", bits, z)
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(z, `s2026._domainkey.example.com. IN TXT ( "`), `" )`)
		strs := strings.Split(inner, `" "`)
		wantN := 2 + (len(txt)-len("v=DKIM1; k=rsa; ")-1)/255
		if len(strs) != wantN {
			t.Errorf("%d bits: %d strings, want %d", bits, len(strs), wantN)
		}
		for _, s := range strs {
			if len(s) > 255 {
				t.Errorf("%d bits: string of %d chars", bits, len(s))
			}
		}
		if strings.Join(strs, "") != txt {
			t.Errorf("%d bits: strings do not concatenate to the record", bits)
		}
	}
	if z := ZoneRecord("example.com", "ed", "v=DKIM1; k=ed25519; p=AAAA"); z != `ed._domainkey.example.com. IN TXT ( "v=DKIM1; k=ed25519; " "p=AAAA" )` {
		t.Errorf("ed25519: %s", z)
	}
}
