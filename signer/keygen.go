package signer

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RSA sizes GenerateKey accepts: below 2048 is not worth creating today, and
// above 4096 the record no longer fits a plain UDP DNS answer comfortably
// (RFC 8301 §3.2 only obliges verifiers up to 4096).
const (
	minGenBits = 2048
	maxGenBits = 4096
)

// GenerateKey makes a new private key, returned as PKCS#8 PEM, and its TXT
// record. algorithm is AlgRSA (bits 0 means 2048) or AlgEd25519 (bits must be
// 0 or 256).
func GenerateKey(algorithm string, bits int) (pemBytes []byte, txt string, err error) {
	var priv any
	switch algorithm {
	case AlgRSA:
		if bits == 0 {
			bits = 2048
		}
		if bits < minGenBits || bits > maxGenBits {
			return nil, "", fmt.Errorf("RSA key size %d out of range %d..%d", bits, minGenBits, maxGenBits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, "", fmt.Errorf("generate RSA key: %w", err)
		}
		priv = k
	case AlgEd25519:
		if bits != 0 && bits != 256 {
			return nil, "", fmt.Errorf("ed25519 keys have a fixed size; bits must not be set (got %d)", bits)
		}
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", fmt.Errorf("generate Ed25519 key: %w", err)
		}
		priv = k
	default:
		return nil, "", fmt.Errorf("unknown algorithm %q (want %s or %s)", algorithm, AlgRSA, AlgEd25519)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("encode private key: %w", err)
	}
	pemBytes = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	k, err := parseKey(pemBytes)
	if err != nil {
		return nil, "", fmt.Errorf("re-read generated key: %w", err)
	}
	return pemBytes, k.TXT(), nil
}

// WriteKeyFile creates path with mode 0600 (set explicitly, whatever the
// umask), writes pemBytes, and fsyncs the file and its directory. It never
// overwrites: an existing path yields an error wrapping fs.ErrExist. On
// failure nothing is left behind.
func WriteKeyFile(path string, pemBytes []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod key file: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close key file: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("open key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync key directory: %w", err)
	}
	return nil
}

// maxTXTString is the longest character-string in a TXT record (RFC 1035
// §3.3.14, one length octet); longer records are split into several strings,
// which verifiers concatenate (RFC 6376 §3.6.2.2).
const maxTXTString = 255

// ZoneRecord renders a key record in zone-file form:
//
//	S._domainkey.D. IN TXT ( "v=DKIM1; k=rsa; " "p=..." )
//
// with the tags before p= in one string and p= split into strings of at most
// 255 characters.
func ZoneRecord(domain, selector, txt string) string {
	var parts []string
	head, p, found := strings.Cut(txt, "p=")
	if found {
		if head != "" {
			parts = append(parts, head)
		}
		p = "p=" + p
	} else {
		p = txt
	}
	for len(p) > maxTXTString {
		parts = append(parts, p[:maxTXTString])
		p = p[maxTXTString:]
	}
	parts = append(parts, p)
	for i, s := range parts {
		parts[i] = `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
	}
	name := Key{Domain: normDomain(domain), Selector: selector}.DNSName()
	return name + " IN TXT ( " + strings.Join(parts, " ") + " )"
}
