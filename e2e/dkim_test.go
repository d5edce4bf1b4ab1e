package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"relayd/internal/smtptest"
	"relayd/signer"
)

// dkimKeys generates keys, writes them 0600 and returns the [[dkim]] TOML
// and the DNS records (name -> TXT) a verifier needs.
type testKey struct{ domain, selector, alg string }

func dkimSetup(t *testing.T, dir string, keys ...testKey) (toml string, records map[string]string) {
	t.Helper()
	records = map[string]string{}
	var b strings.Builder
	for _, k := range keys {
		bits := 0
		if k.alg == "rsa" {
			bits = 2048
		}
		pemBytes, txt, err := signer.GenerateKey(k.alg, bits)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, k.domain+"."+k.selector+".pem")
		if err := signer.WriteKeyFile(path, pemBytes); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "[[dkim]]\ndomain = %q\nselector = %q\nkey_file = %q\n", k.domain, k.selector, path)
		records[k.selector+"._domainkey."+k.domain] = txt
	}
	return b.String(), records
}

// verifyDKIMPy runs dkimpy (Debian's python3-dkim) on msg.
func verifyDKIMPy(t *testing.T, msg []byte, records map[string]string) (bool, string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3-dkim missing under /usr/bin/python3 (CI installs it)")
		}
		t.Skip("python3-dkim not installed")
	}
	f := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(f, msg, 0o644)
	args := []string{"../signer/testdata/dkimverify.py", f}
	for name, txt := range records {
		args = append(args, name+"="+txt)
	}
	out, err := exec.Command("/usr/bin/python3", args...).CombinedOutput()
	return err == nil, string(out)
}

// verifyGo runs go-msgauth's verifier; it returns the domains that verified.
func verifyGo(t *testing.T, msg []byte, records map[string]string) (pass []string, fail []string) {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if txt, ok := records[strings.TrimSuffix(name, ".")]; ok {
				return []string{txt}, nil
			}
			return nil, fmt.Errorf("no record for %s", name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err == nil {
			pass = append(pass, v.Domain)
		} else {
			fail = append(fail, v.Domain+": "+v.Err.Error())
		}
	}
	return pass, fail
}

func TestDKIMEndToEnd(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	keysTOML, records := dkimSetup(t, dir,
		testKey{"example.com", "rsa2026", "rsa"},
		testKey{"example.com", "ed2026", "ed25519"},
		testKey{"example.net", "solo", "ed25519"},
		testKey{"example.org", "rsaonly", "rsa"},
	)
	cfg := writeConfig(t, dir, sh, "", "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("\n"+keysTOML)...), 0o644)
	r := start(t, dir, cfg)

	// A foreign signature already on the message (another domain's key).
	presigned := foreignSign(t, records, "list.example", "list",
		"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: forwarded\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pre@list.example>\r\n\r\nsigned before relayd\r\n")

	long := strings.Repeat("word ", 60)
	cases := []struct {
		name, from, msg string
		sigs            int
	}{
		{"rsa", "a@example.org", "From: <a@example.org>\r\nTo: bob@example.net\r\nSubject: rsa\r\n\r\nbody\r\n", 1},
		{"ed25519", "a@example.net", "From: <a@example.net>\r\nTo: bob@example.org\r\nSubject: ed\r\n\r\nbody\r\n", 1},
		{"dual", "a@example.com", "From: A <a@example.com>\r\nTo: bob@example.org\r\nSubject: both\r\n\r\nbody\r\n", 2},
		{"folded and long", "a@example.com", "From: A <a@example.com>\r\nTo: bob@example.org,\r\n\tcarol@example.org\r\nSubject: " + long + "\r\n continued\r\nX-Long: " + strings.Repeat("x", 900) + "\r\n\r\nbody\r\n", 2},
		{"8-bit body", "a@example.com", "From: a@example.com\r\nTo: bob@example.org\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe, \xe2\x82\xac 5\r\n", 2},
		{"empty body", "a@example.com", "From: a@example.com\r\nTo: bob@example.org\r\nSubject: empty\r\n\r\n", 2},
		{"no headers to complete", "a@example.com", "Subject: relayd adds Date, Message-ID and From\r\n\r\nbody\r\n", 2},
		{"subdomain", "alerts@alerts.example.com", "From: Alerts <alerts@alerts.example.com>\r\nTo: bob@example.org\r\nSubject: sub\r\n\r\nbody\r\n", 2},
		{"already signed by another domain", "alice@example.com", presigned, 3},
	}
	for i, tc := range cases {
		if err := r.send(t, tc.from, []string{fmt.Sprintf("rcpt%d@example.org", i)}, tc.msg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	msgs := sh.WaitMessages(t, len(cases), 30*time.Second)
	byRcpt := map[string][]byte{}
	for _, m := range msgs {
		byRcpt[m.To[0]] = m.Data
	}
	for i, tc := range cases {
		data := byRcpt[fmt.Sprintf("rcpt%d@example.org", i)]
		if data == nil {
			t.Errorf("%s: not delivered", tc.name)
			continue
		}
		if n := bytes.Count(data, []byte("DKIM-Signature:")); n != tc.sigs {
			t.Errorf("%s: %d signatures, want %d\n%s", tc.name, n, tc.sigs, data)
		}
		if ok, out := verifyDKIMPy(t, data, records); !ok {
			t.Errorf("%s: dkimpy does not verify:\n%s\n%s", tc.name, out, data)
		}
		if pass, fail := verifyGo(t, data, records); len(fail) > 0 || len(pass) != tc.sigs {
			t.Errorf("%s: go-msgauth pass=%v fail=%v", tc.name, pass, fail)
		}
		if tc.name == "subdomain" && !bytes.Contains(data, []byte("d=example.com;")) {
			t.Errorf("subdomain From not signed with d=example.com:\n%s", data)
		}
		// Negative: one body byte altered after signing fails both verifiers.
		if tc.name == "dual" {
			bad := bytes.Replace(data, []byte("\r\n\r\nbody"), []byte("\r\n\r\nBody"), 1)
			if ok, _ := verifyDKIMPy(t, bad, records); ok {
				t.Errorf("dkimpy verified an altered body")
			}
			if pass, _ := verifyGo(t, bad, records); len(pass) != 0 {
				t.Errorf("go-msgauth verified an altered body: %v", pass)
			}
		}
	}
	// A domain without a key is relayed unsigned, with a log line.
	if err := r.send(t, "x@unsigned.example", []string{"z@example.org"}, "From: x@unsigned.example\r\nSubject: u\r\n\r\nb\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, m := range sh.WaitMessages(t, len(cases)+1, 20*time.Second) {
		if m.To[0] == "z@example.org" && bytes.Contains(m.Data, []byte("DKIM-Signature")) {
			t.Errorf("unsigned domain got a signature")
		}
	}
}

// foreignSign signs msg with a fresh key for domain, as a mailing list
// would before the message reaches relayd, and adds its record.
func foreignSign(t *testing.T, records map[string]string, domain, selector, msg string) string {
	t.Helper()
	dir := t.TempDir()
	pemBytes, txt, err := signer.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "foreign.pem")
	if err := signer.WriteKeyFile(path, pemBytes); err != nil {
		t.Fatal(err)
	}
	s, errs := signer.Load([]signer.Entry{{Domain: domain, Selector: selector, KeyFile: path}}, signer.Options{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	w, finish, err := s.Sign(domain)
	if err != nil || w == nil {
		t.Fatalf("foreign signer: %v", err)
	}
	io.WriteString(w, msg)
	sig, err := finish()
	if err != nil {
		t.Fatal(err)
	}
	records[selector+"._domainkey."+domain] = txt
	return string(sig) + msg
}
