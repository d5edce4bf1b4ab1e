package e2e

import (
	"bytes"
	"fmt"
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
