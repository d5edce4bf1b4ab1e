package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// 8-bit UTF-8 text to a smarthost without 8BITMIME (RFC 6152 §3): once
// relayd has seen that the smarthost does not offer it, 8-bit parts are
// downgraded to quoted-printable at intake, before signing; the relayed
// message has no 8-bit octet in its body, decodes to the same content and
// verifies with dkimpy (issue 16).
func TestSevenBitSmarthost(t *testing.T) {
	r := sevenBitRun(t, false)
	r.waitLog(t, `fixed=8bitmime`, 5*time.Second)
}

// The same through a route: the 7-bit smarthost is a [[smarthost]], and
// the downgrade follows the smarthost the message takes, not [upstream]
// (which this mail never reaches, so relayd knows nothing of it).
func TestSevenBitRoutedSmarthost(t *testing.T) {
	sevenBitRun(t, true)
}

// sevenBitRun sends two 8-bit messages to a 7-bit smarthost, [upstream]
// or (routed) a [[smarthost]] that a route for example.com names, and
// checks the second one as it arrived there.
func sevenBitRun(t *testing.T, routed bool) *relayd {
	sh := smtptest.NewSevenBit(t)
	dir := t.TempDir()
	keys, records := dkimSetup(t, dir, testKey{"example.com", "sb", "ed25519"})
	up, extra := sh.Addr, ""
	var other *smtptest.SevenBit
	if routed {
		other = smtptest.NewSevenBit(t)
		up = other.Addr
		extra = fmt.Sprintf("[[smarthost]]\nname = \"legacy\"\naddress = %q\ntls = \"none\"\ntimeout = \"5s\"\n"+
			"[[route]]\nsender_domain = [\"example.com\"]\nsmarthost = \"legacy\"\n", sh.Addr)
	}
	cfg := fmt.Sprintf("hostname = %q\nstate_dir = %q\n[listen]\nsmtp = [\"127.0.0.1:0\"]\n"+
		"[upstream]\naddress = %q\ntls = \"none\"\ntimeout = \"5s\"\n[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n%s%s",
		hostname, filepath.Join(dir, "spool"), up, keys, extra)
	path := filepath.Join(dir, "relayd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := start(t, dir, path)
	msg := func(marker string) string {
		return "From: app@example.com\r\nTo: bob@example.org\r\nSubject: " + marker + "\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
	}
	wait := func(marker string) []byte {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, m := range sh.Messages() {
				if bytes.Contains(m.Data, []byte(marker)) {
					return m.Data
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s did not arrive at the 7-bit smarthost:\n%s", marker, r.logs())
		return nil
	}
	// The first message tells relayd what the smarthost offers.
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, msg("marker-7bit-first")); err != nil {
		t.Fatal(err)
	}
	wait("marker-7bit-first")
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, msg("marker-7bit-second")); err != nil {
		t.Fatal(err)
	}
	data := wait("marker-7bit-second")
	body := data[bytes.Index(data, []byte("\r\n\r\n")):]
	for _, c := range body {
		if c >= 0x80 {
			t.Fatalf("an 8-bit octet reached the 7-bit smarthost:\n%s", data)
		}
	}
	sameContentPy(t, []byte(msg("marker-7bit-second")), data)
	if ok, out := verifyDKIMPy(t, data, records); !ok {
		t.Errorf("dkimpy does not verify the downgraded message:\n%s\n%s", out, data)
	}
	if other != nil {
		if n := len(other.Messages()); n != 0 {
			t.Errorf("[upstream] received %d messages, want none", n)
		}
	}
	return r
}
