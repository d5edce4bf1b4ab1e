package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sameContentPy has Python's email package decode both messages and compare
// every leaf part.
func sameContentPy(t *testing.T, orig, got []byte) {
	t.Helper()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.eml"), filepath.Join(dir, "b.eml")
	os.WriteFile(a, orig, 0o644)
	os.WriteFile(b, got, 0o644)
	out, err := exec.Command("/usr/bin/python3", "../internal/reencode/testdata/samecontent.py", a, b).CombinedOutput()
	if err != nil {
		t.Errorf("decoded content differs: %v\n%s", err, out)
	}
}

func longestLine(b []byte) int {
	most := 0
	for _, l := range bytes.Split(b, []byte("\r\n")) {
		most = max(most, len(l))
	}
	return most
}

// Lines over 998 octets from apps (minified HTML, JSON, base64 without
// breaks) are re-encoded before signing (issue 16): what reaches the
// smarthost has no line over 998, decodes to the same content and verifies
// with dkimpy. A long line in a quoted-printable part is refused with 550
// 5.6.0 naming the real limit.
func TestLongLinesReencoded(t *testing.T) {
	e := newSMEnv(t, "", false)
	keys, records := dkimSetup(t, e.dir, testKey{"example.com", "ll", "ed25519"})
	b, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, append(b, "\n"+keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.r = start(t, e.dir, e.config)

	html := "<html><body>" + strings.Repeat("<p class=\"x\">Gr\xc3\xbc\xc3\x9fe = 100%</p>", 60) + "</body></html>"
	b64 := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", 50)[:1800]
	cases := []struct{ name, msg string }{
		{"html", "From: App <app@example.com>\r\nTo: bob@example.org\r\nSubject: html marker-ll-html\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + html + "\r\n"},
		{"multipart", "From: app@example.com\r\nTo: bob@example.org\r\nSubject: att marker-ll-multi\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=\"==b==\"\r\n\r\n--==b==\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
			"--==b==\r\nContent-Type: application/json\r\n\r\n" + strings.Repeat(`{"a":1},`, 180) + "\r\n" +
			"--==b==\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n" + b64 + "\r\n--==b==--\r\n"},
	}
	for _, c := range cases {
		if err := e.r.send(t, "app@example.com", []string{"bob@example.org"}, c.msg); err != nil {
			t.Fatalf("%s over SMTP: %v", c.name, err)
		}
	}
	e.mustShim(t, strings.ReplaceAll(strings.ReplaceAll(cases[0].msg, "marker-ll-html", "marker-ll-sendmail"), "\r\n", "\n"), "-t", "-i")
	for _, c := range []struct{ marker, orig string }{{"marker-ll-html", cases[0].msg}, {"marker-ll-multi", cases[1].msg},
		{"marker-ll-sendmail", strings.ReplaceAll(cases[0].msg, "marker-ll-html", "marker-ll-sendmail")}} {
		m := smWait(t, e.sh, c.marker, 20*time.Second)
		if l := longestLine(m.Data); l > 998 {
			t.Errorf("%s: a %d-octet line reached the smarthost", c.marker, l)
		}
		sameContentPy(t, []byte(c.orig), m.Data)
		if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
			t.Errorf("%s: dkimpy does not verify:\n%s", c.marker, out)
		}
	}
	e.r.waitLog(t, `fixed=long-lines`, 5*time.Second)

	bad := "From: app@example.com\r\nTo: bob@example.org\r\nSubject: broken\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nfine\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		strings.Repeat("q", 1500) + "\r\n--b--\r\n"
	err := e.r.send(t, "app@example.com", []string{"bob@example.org"}, bad)
	if code(err) != 550 || !strings.Contains(fmt.Sprint(err), "998") {
		t.Errorf("broken part: %v, want 550 5.6.0 naming 998", err)
	}
}

// longLinesMessage is issue 16's report as one message: a text line of
// 2,100 characters, a 5,000-character HTML line and a 100 KB base64
// attachment line without breaks.
func longLinesMessage(marker string) string {
	raw := make([]byte, 75<<10)
	for i := range raw {
		raw[i] = byte(i*7 + i/251)
	}
	b64 := base64.StdEncoding.EncodeToString(raw) // one 100 KB line
	return "From: App <app@example.com>\r\nTo: bob@example.org\r\nSubject: report " + marker + "\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"==lb==\"\r\n\r\n" +
		"--==lb==\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + strings.Repeat("0123456789", 210) + "\r\n" +
		"--==lb==\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html>" + strings.Repeat("<td>x</td>", 498) + "<b></b></html>\r\n" +
		"--==lb==\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n" + b64 + "\r\n--==lb==--\r\n"
}

// The lines smtpd refused before issue 16 (over go-smtp's 2,000) are
// taken over SMTP, from go-smtp's client and from Python's smtplib, and
// re-encoded: what reaches the smarthost has no line over 998, decodes to
// the same content and verifies with dkimpy, and each message's
// status=queued line says fixed=long-lines.
func TestLongLinesOverSMTP(t *testing.T) {
	e := newSMEnv(t, "", false)
	keys, records := dkimSetup(t, e.dir, testKey{"example.com", "lo", "rsa"})
	b, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, append(b, "\n"+keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.r = start(t, e.dir, e.config)

	sent := map[string]string{}
	goMsg := longLinesMessage("marker-lo-go")
	if l := longestLine([]byte(goMsg)); l < 100<<10 {
		t.Fatalf("test message's longest line is %d", l)
	}
	if err := e.r.send(t, "app@example.com", []string{"bob@example.org"}, goMsg); err != nil {
		t.Fatalf("go-smtp client: %v", err)
	}
	sent["marker-lo-go"] = goMsg
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		pyMsg := longLinesMessage("marker-lo-py")
		f := filepath.Join(t.TempDir(), "msg.eml")
		os.WriteFile(f, []byte(pyMsg), 0o644)
		host, port, _ := net.SplitHostPort(e.r.addr)
		py := fmt.Sprintf(`
import smtplib
s = smtplib.SMTP(%q, %s, local_hostname="py.test", timeout=20)
s.ehlo()
r = s.sendmail("app@example.com", ["bob@example.org"], open(%q, "rb").read())
s.quit()
`, host, port, f)
		if out, err := exec.Command("/usr/bin/python3", "-c", py).CombinedOutput(); err != nil {
			t.Fatalf("python smtplib: %v\n%s", err, out)
		}
		sent["marker-lo-py"] = pyMsg
	} else {
		t.Log("no /usr/bin/python3: smtplib not tried")
	}
	for marker, orig := range sent {
		m := smWait(t, e.sh, marker, 20*time.Second)
		if l := longestLine(m.Data); l > 998 {
			t.Errorf("%s: a %d-octet line reached the smarthost", marker, l)
		}
		sameContentPy(t, []byte(orig), m.Data)
		if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
			t.Errorf("%s: dkimpy does not verify:\n%s", marker, out)
		}
	}
	e.r.waitLog(t, `status=queued`, 5*time.Second)
	queued, fixed := 0, 0
	for _, l := range strings.Split(e.r.logs(), "\n") {
		if strings.Contains(l, "status=queued") {
			queued++
			if strings.Contains(l, "fixed=long-lines") {
				fixed++
			}
		}
	}
	if queued != len(sent) || fixed != len(sent) {
		t.Errorf("%d status=queued lines, %d with fixed=long-lines; want %d of each:\n%s", queued, fixed, len(sent), e.r.logs())
	}
}
