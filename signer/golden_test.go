package signer

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden signatures in testdata/golden")

// Golden vectors: testdata/golden/NAME.eml (LF line endings, turned into CRLF)
// signed for example.com with the test-only keys rsa2048.pkcs8.pem (selector
// "rsa") and ed25519.pem (selector "ed") at fixedClock must give exactly
// NAME.sig. RSASSA-PKCS1-v1_5 and Ed25519 are deterministic, so any change in
// canonicalisation, h= or layout shows up here.
func TestGolden(t *testing.T) {
	msgs, err := filepath.Glob(filepath.Join("testdata", "golden", "*.eml"))
	if err != nil || len(msgs) == 0 {
		t.Fatalf("no golden messages: %v", err)
	}
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	for _, path := range msgs {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			msg := crlf(string(raw))
			signed := signMsg(t, s, "example.com", msg)
			sig := signed[:len(signed)-len(msg)]
			want := strings.TrimSuffix(path, ".eml") + ".sig"
			if *update {
				if err := os.WriteFile(want, sig, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(sig, golden) {
				t.Errorf("signature differs from %s:\ngot:\n%s\nwant:\n%s", want, sig, golden)
			}
			ours := 0
			for _, v := range goVerify(t, signed, records(s)) {
				if v.Domain != "example.com" {
					continue // a foreign signature kept in the vector
				}
				ours++
				if v.Err != nil {
					t.Errorf("golden signature does not verify: %v", v.Err)
				}
			}
			if ours != 2 {
				t.Errorf("%d example.com signatures, want 2", ours)
			}
		})
	}
}
