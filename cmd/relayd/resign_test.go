package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"relayd/signer"
)

// resignMessage replaces the prefix's old DKIM-Signature fields by a new
// signature over prefix and body that verifies; a domain without a key is
// errNoKey.
func TestResignMessage(t *testing.T) {
	pemBytes, txt, err := signer.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "k.pem")
	if err := signer.WriteKeyFile(key, pemBytes); err != nil {
		t.Fatal(err)
	}
	s, errs := signer.Load([]signer.Entry{{Domain: "example.com", Selector: "s", KeyFile: key}}, signer.Options{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	prefix := "DKIM-Signature: v=1; d=old.example; b=stale\r\n folded\r\nReceived: by relay.example.com; Thu, 03 Dec 2026 09:00:00 +0000\r\n"
	body := "From: App <app@example.com>\r\nSubject: s\r\n\r\nbody\r\n"
	p, domain, err := resignMessage(s, []byte(prefix), strings.NewReader(prefix+body))
	if err != nil || domain != "example.com" {
		t.Fatalf("resignMessage: %q %v", domain, err)
	}
	msg := string(p) + body
	if strings.Count(msg, "DKIM-Signature:") != 1 || strings.Contains(msg, "stale") || !strings.Contains(msg, "\r\nReceived: by relay.example.com") {
		t.Fatalf("new prefix:\n%s", p)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader([]byte(msg)), &dkim.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return []string{txt}, nil }})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("verify: %v %+v", err, vs)
	}
	other := "From: x@other.example\r\n\r\nb\r\n"
	if _, _, err := resignMessage(s, nil, strings.NewReader(other)); !errors.Is(err, errNoKey) {
		t.Errorf("other domain: %v", err)
	}
}
