package signer

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Key algorithms.
const (
	AlgRSA     = "rsa"
	AlgEd25519 = "ed25519"
)

// RSA size limits: RFC 8301 §3.2 says verifiers must accept 1024..4096 bits
// and signers must not use less than 1024; 2048 is the common recommendation.
const (
	minRSABits  = 1024
	warnRSABits = 2048
)

// Key is one loaded signing key.
type Key struct {
	Domain    string // d=, lower-case, no trailing dot
	Selector  string // s=
	File      string // where the private key was read from
	Algorithm string // AlgRSA or AlgEd25519
	Bits      int    // RSA modulus size; 256 for Ed25519

	signer crypto.Signer
}

// DNSName is the owner name of the key's TXT record, "S._domainkey.D."
// (RFC 6376 §3.6.2.1).
func (k Key) DNSName() string {
	return k.Selector + "._domainkey." + k.Domain + "."
}

// TXT is the key record (RFC 6376 §3.6.1): "v=DKIM1; k=rsa; p=BASE64" where p=
// is the DER SubjectPublicKeyInfo for RSA and, for Ed25519, the raw 32-byte
// public key (RFC 8463 §4.2).
func (k Key) TXT() string {
	if k.signer == nil {
		return ""
	}
	txt, err := txtFor(k.signer.Public())
	if err != nil {
		return ""
	}
	return txt
}

func txtFor(pub crypto.PublicKey) (string, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			return "", fmt.Errorf("encode public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p), nil
	default:
		return "", fmt.Errorf("unsupported public key type %T", pub)
	}
}

// Options are the injected dependencies of a Signer.
type Options struct {
	// Clock is not consulted: go-msgauth takes t= from time.Now and offers
	// no way to inject it. The field stays so callers keep compiling.
	Clock  func() time.Time
	Logger *slog.Logger // slog.Default() if nil
}

// Entry is one key to load (a [[dkim]] entry; errors name it dkim[i], i
// its index in Load's entries, the config's own numbering).
type Entry struct {
	Domain   string
	Selector string
	KeyFile  string // PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519
}

// Load reads every key in entries. It returns a usable *Signer even when some
// entries fail, together with every problem found; each error names the
// config key (dkim[i].key_file) and the file. Domains whose entry failed are
// remembered: Sign refuses them with an error instead of sending unsigned.
func Load(entries []Entry, opts Options) (*Signer, []error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Signer{
		log:    opts.Logger,
		byDom:  make(map[string][]*Key),
		broken: make(map[string]error),
	}
	var errs []error
	for i, e := range entries {
		field := fmt.Sprintf("dkim[%d]", i)
		dom := normDomain(e.Domain)
		var problems []error
		if dom == "" {
			problems = append(problems, fmt.Errorf("%s.domain: empty", field))
		}
		if strings.TrimSpace(e.Selector) == "" {
			problems = append(problems, fmt.Errorf("%s.selector: empty", field))
		}
		k, err := loadKeyFile(e.KeyFile, opts.Logger)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s.key_file: %w", field, err))
		}
		if len(problems) > 0 {
			errs = append(errs, problems...)
			if dom != "" && s.broken[dom] == nil {
				s.broken[dom] = errors.Join(problems...)
			}
			continue
		}
		k.Domain, k.Selector = dom, strings.TrimSpace(e.Selector)
		s.keys = append(s.keys, k)
		s.byDom[dom] = append(s.byDom[dom], k)
	}
	return s, errs
}

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// loadKeyFile reads and checks one private key file.
func loadKeyFile(path string, log *slog.Logger) (*Key, error) {
	if path == "" {
		return nil, errors.New("empty")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		how := "readable"
		if perm&0o044 == 0 {
			how = "accessible"
		}
		return nil, fmt.Errorf("%s: key is %s by group/others (mode %04o); fix: chmod 600 %s", path, how, perm, path)
	}
	data := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for len(data) < 1<<20 {
		n, rerr := f.Read(buf)
		data = append(data, buf[:n]...)
		if rerr != nil {
			break
		}
	}
	k, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k.File = path
	if k.Algorithm == AlgRSA && k.Bits < warnRSABits {
		log.Warn("dkim: weak RSA key, generate a 2048-bit one", "file", path, "bits", k.Bits)
	}
	return k, nil
}

// parseKey accepts a PEM "PRIVATE KEY" (PKCS#8, RSA or Ed25519) or
// "RSA PRIVATE KEY" (PKCS#1).
func parseKey(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found; expected a PEM private key")
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, not a private key (want PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		bits := p.N.BitLen()
		if bits < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, fewer than %d (RFC 8301); generate a new one with: relayd dkim keygen", bits, minRSABits)
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("invalid RSA key: %w", err)
		}
		return &Key{Algorithm: AlgRSA, Bits: bits, signer: p}, nil
	case ed25519.PrivateKey:
		return &Key{Algorithm: AlgEd25519, Bits: 256, signer: p}, nil
	default:
		return nil, fmt.Errorf("unsupported private key type %T (want RSA or Ed25519)", priv)
	}
}
