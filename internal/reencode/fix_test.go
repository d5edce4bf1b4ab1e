package reencode

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func fix(t *testing.T, msg string) (string, int, error) {
	t.Helper()
	var out bytes.Buffer
	n, err := Fix(&out, strings.NewReader(msg), int64(len(msg)))
	return out.String(), n, err
}

// longestLine is the longest line of b without its CRLF.
func longestLine(b string) int {
	most := 0
	for _, l := range strings.Split(b, "\r\n") {
		most = max(most, len(l))
	}
	return most
}

// sameContent has Python's email package decode both messages and compare
// every leaf (skipped without /usr/bin/python3).
func sameContent(t *testing.T, orig, fixed string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.eml"), filepath.Join(dir, "b.eml")
	os.WriteFile(a, []byte(orig), 0o644)
	os.WriteFile(b, []byte(fixed), 0o644)
	out, err := exec.Command("/usr/bin/python3", "testdata/samecontent.py", a, b).CombinedOutput()
	if err != nil {
		t.Errorf("decoded content differs: %v\n%s", err, out)
	}
}

func randBase64(n int) string {
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = a[r.IntN(64)]
	}
	return string(b)
}

func TestLongHTMLLine(t *testing.T) {
	html := "<html>" + strings.Repeat("<p>caf\xc3\xa9 = 100%</p> ", 250) + "</html>"
	msg := "From: a@x.example\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\nsecond line\r\n"
	got, n, err := fix(t, msg)
	if err != nil || n != 1 {
		t.Fatalf("Fix: %d %v", n, err)
	}
	if l := longestLine(got); l > 76 {
		t.Errorf("a line of %d octets is left", l)
	}
	if !strings.HasPrefix(got, "From: a@x.example\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") {
		t.Errorf("header:\n%s", got[:300])
	}
	sameContent(t, msg, got)
}

func TestMultipart(t *testing.T) {
	att := randBase64(100 << 10)
	plain := "short text\r\nstays as it is\r\n"
	msg := "From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\n" + plain +
		"\r\n--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		strings.Repeat("<b>x</b>", 700) + "\r\n--b2--\r\n" +
		"\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + att + "\r\n--b1--\r\nepilogue\r\n"
	got, n, err := fix(t, msg)
	if err != nil || n != 2 {
		t.Fatalf("Fix: %d %v", n, err)
	}
	if l := longestLine(got); l > 998 {
		t.Errorf("a line of %d octets is left", l)
	}
	if !strings.Contains(got, "--b1\r\nContent-Type: text/plain\r\n\r\n"+plain+"\r\n--b1\r\n") || !strings.Contains(got, "preamble") || !strings.HasSuffix(got, "--b1--\r\nepilogue\r\n") {
		t.Errorf("an unaffected part changed:\n%s", got[:600])
	}
	if !strings.Contains(got, "Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") {
		t.Error("html part not made quoted-printable")
	}
	sameContent(t, msg, got)
}

func TestUnfixableAndUnchanged(t *testing.T) {
	bad := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nok\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("x", 1200) + "\r\n--b--\r\n"
	if _, _, err := fix(t, bad); !errors.Is(err, ErrUnfixable) {
		t.Errorf("long line in a quoted-printable part: %v", err)
	}
	rfc822 := "Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\n" + strings.Repeat("y", 1000) + "\r\n"
	if _, _, err := fix(t, rfc822); !errors.Is(err, ErrUnfixable) {
		t.Errorf("long line in message/rfc822: %v", err)
	}
	for _, ok := range []string{"Subject: s\r\n\r\n" + strings.Repeat("z", 998) + "\r\n", "Subject: only a header\r\n", ""} {
		got, n, err := fix(t, ok)
		if err != nil || n != 0 || got != ok {
			t.Errorf("unchanged message: %d %v, %q", n, err, got)
		}
	}
	// A non-text part without an encoding becomes quoted-printable too.
	bin := "Content-Type: application/json\r\n\r\n" + strings.Repeat("{\"k\":\"\x01\xff=\"},", 200) + "\r\n"
	got, n, err := fix(t, bin)
	if err != nil || n != 1 || !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable\r\n") || longestLine(got) > 76 {
		t.Errorf("octet-stream: %d %v\n%q", n, err, got[:200])
	}
	sameContent(t, bin, got)
}

// For a smarthost without 8BITMIME, 8-bit text parts become
// quoted-printable; 7-bit parts and headers stay as they are.
func TestSevenBitDowngrade(t *testing.T) {
	msg := "From: a@x.example\r\nSubject: caf\xc3\xa9\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>ascii</p>\r\n--b--\r\n"
	var out bytes.Buffer
	n, err := FixWith(&out, strings.NewReader(msg), int64(len(msg)), Options{SevenBit: true})
	got := out.String()
	if err != nil || n != 1 {
		t.Fatalf("FixWith: %d %v", n, err)
	}
	body := got[strings.Index(got, "\r\n\r\n"):]
	for _, c := range []byte(body) {
		if c >= 0x80 {
			t.Fatalf("8-bit octet left in the body:\n%s", got)
		}
	}
	if !strings.Contains(got, "Subject: caf\xc3\xa9\r\n") || !strings.Contains(got, "--b\r\nContent-Type: text/html\r\n\r\n<p>ascii</p>\r\n--b--") {
		t.Errorf("more changed than the 8-bit part:\n%s", got)
	}
	sameContent(t, msg, got)
	if n, _ := FixWith(io.Discard, strings.NewReader(msg), int64(len(msg)), Options{}); n != 0 {
		t.Errorf("without SevenBit: %d parts changed", n)
	}
}
