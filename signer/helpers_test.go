package signer

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// fixedClock is the clock of golden vectors and most tests.
func fixedClock() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// keyCopy copies a test-only key from testdata into a private temp file (git
// does not keep mode 0600) and returns its path.
func keyCopy(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// entry is a shorthand for one [[dkim]] entry with a testdata key.
type entry struct{ domain, selector, key string }

func mustLoad(t testing.TB, es ...entry) *Signer {
	t.Helper()
	var cs []Entry
	for _, e := range es {
		cs = append(cs, Entry{Domain: e.domain, Selector: e.selector, KeyFile: keyCopy(t, e.key)})
	}
	s, errs := Load(cs, Options{Clock: fixedClock})
	if len(errs) > 0 {
		t.Fatalf("Load: %v", errs)
	}
	return s
}

// records maps every loaded key's DNS name to its TXT record.
func records(ss ...*Signer) map[string]string {
	m := make(map[string]string)
	for _, s := range ss {
		for _, k := range s.Keys() {
			m[strings.TrimSuffix(k.DNSName(), ".")] = k.TXT()
		}
	}
	return m
}

// signMsg signs msg for domain with several Write sizes and returns the
// signature fields prepended to msg.
func signMsg(t testing.TB, s *Signer, domain string, msg []byte) []byte {
	t.Helper()
	w, finish, err := s.Sign(domain)
	if err != nil {
		t.Fatalf("Sign(%q): %v", domain, err)
	}
	if w == nil {
		t.Fatalf("Sign(%q): no key", domain)
	}
	// Odd chunk sizes exercise the header/body boundary and CRLF splits.
	for rest := msg; len(rest) > 0; {
		n := min(len(rest), 7+len(rest)%13)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	sig, err := finish()
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	return append(sig, msg...)
}

// goVerify checks every signature with go-msgauth.
func goVerify(t testing.TB, signed []byte, recs map[string]string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if txt, ok := recs[strings.TrimSuffix(name, ".")]; ok {
				return []string{txt}, nil
			}
			return nil, io.EOF
		},
	})
	if err != nil {
		t.Fatalf("dkim.Verify: %v", err)
	}
	return vs
}

const python = "/usr/bin/python3"

// pyVerify checks every signature with dkimpy; it reports whether all passed.
// A missing dkimpy skips the test locally and fails it in CI.
func pyVerify(t testing.TB, signed []byte, recs map[string]string) (bool, string) {
	t.Helper()
	if err := exec.Command(python, "-c", "import dkim").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("dkimpy not importable under %s: %v", python, err)
		}
		t.Fatalf("dkimpy not importable under %s (needed in CI): %v", python, err)
	}
	f := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(f, signed, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join("testdata", "dkimverify.py"), f}
	for name, txt := range recs {
		args = append(args, name+"="+txt)
	}
	out, err := exec.Command(python, args...).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("dkimverify.py: %v", err)
		}
	}
	return err == nil, string(out)
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// splitFields cuts a header block into fields, each with its continuation
// lines and final CRLF.
func splitFields(hdr []byte) []string {
	var fields []string
	for len(hdr) > 0 {
		i := bytes.Index(hdr, []byte("\r\n"))
		line := hdr
		if i >= 0 {
			line = hdr[:i+2]
		}
		hdr = hdr[len(line):]
		if len(fields) > 0 && (line[0] == ' ' || line[0] == '\t') {
			fields[len(fields)-1] += string(line)
		} else {
			fields = append(fields, string(line))
		}
	}
	return fields
}

func fieldName(f string) string {
	name, _, ok := strings.Cut(f, ":")
	if !ok {
		return ""
	}
	return strings.ToLower(strings.TrimRight(name, " \t"))
}
