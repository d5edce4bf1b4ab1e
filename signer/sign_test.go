package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

const baseMsg = `Received: from app (localhost [127.0.0.1]) by relay.example.com
	with ESMTP id 1234; Fri, 02 Jan 2026 03:04:05 +0000
From: Alice <alice@example.com>
To: bob@example.org
Subject: hello
Date: Fri, 02 Jan 2026 03:04:05 +0000
Message-ID: <1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hello Bob.
  Indented   line with   spaces   
`

func longHeaderMsg() string {
	var to []string
	for i := range 60 {
		to = append(to, "user"+strings.Repeat("x", i%7)+"@example.org")
	}
	return "From: alice@example.com\n" +
		"To: " + strings.Join(to, ",\n\t") + "\n" +
		"Subject: a folded\n   subject\t\twith   tabs \n  and trailing space   \n" +
		"X-Long: " + strings.Repeat("y", 1500) + "\n" +
		"List-Unsubscribe: <mailto:u@example.com>\n" +
		"Date: Fri, 02 Jan 2026 03:04:05 +0000\n\nbody\n"
}

func TestSignVerifies(t *testing.T) {
	t.Parallel()
	rsa := entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}
	ed := entry{"example.com", "ed", "ed25519.pem"}
	cases := []struct {
		name   string
		keys   []entry
		domain string
		msg    string
		sigs   int
	}{
		{"rsa2048", []entry{rsa}, "example.com", baseMsg, 1},
		{"ed25519", []entry{ed}, "example.com", baseMsg, 1},
		{"dual", []entry{rsa, ed}, "example.com", baseMsg, 2},
		{"folded-long-headers", []entry{rsa, ed}, "example.com", longHeaderMsg(), 2},
		{"8bit-body", []entry{rsa, ed}, "example.com",
			"From: a@example.com\nSubject: =?utf-8?q?caf=C3=A9?=\nContent-Transfer-Encoding: 8bit\n\n" +
				"café \xff\xfe naïve\t\n\n\n", 2},
		{"empty-body", []entry{rsa, ed}, "example.com", "From: a@example.com\nSubject: x\n\n", 2},
		{"header-only", []entry{rsa}, "example.com", "From: a@example.com\nSubject: x\n", 1},
		{"no-final-crlf", []entry{ed}, "example.com", "From: a@example.com\n\nlast line", 1},
		{"subdomain-from", []entry{rsa, ed}, "alerts.example.com",
			strings.Replace(baseMsg, "alice@example.com", "cron@alerts.example.com", 1), 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := mustLoad(t, c.keys...)
			signed := signMsg(t, s, c.domain, crlf(c.msg))
			recs := records(s)
			forGo := signed
			if !bytes.Contains(signed, []byte("\r\n\r\n")) {
				// go-msgauth cannot read a message without the empty line;
				// adding it leaves the (empty) body the same.
				forGo = append(bytes.Clone(signed), "\r\n"...)
			}
			vs := goVerify(t, forGo, recs)
			if len(vs) != c.sigs {
				t.Fatalf("go-msgauth found %d signatures, want %d", len(vs), c.sigs)
			}
			for _, v := range vs {
				if v.Err != nil {
					t.Errorf("go-msgauth: d=%s: %v\n%s", v.Domain, v.Err, signed)
				}
				if v.Domain != "example.com" {
					t.Errorf("d=%s, want example.com", v.Domain)
				}
			}
			if ok, out := pyVerify(t, signed, recs); !ok {
				t.Errorf("dkimpy: %s\n%s", out, signed)
			}
		})
	}
}

// A message that already carries another domain's signature keeps it valid,
// and ours verifies too.
func TestSignOverExistingSignature(t *testing.T) {
	t.Parallel()
	other := mustLoad(t, entry{"other.example", "o", "rsa2048.pkcs1.pem"})
	ours := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	first := signMsg(t, other, "other.example", crlf(baseMsg))
	signed := signMsg(t, ours, "example.com", first)
	recs := records(other, ours)
	vs := goVerify(t, signed, recs)
	if len(vs) != 3 {
		t.Fatalf("got %d signatures, want 3", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("d=%s: %v", v.Domain, v.Err)
		}
	}
	if ok, out := pyVerify(t, signed, recs); !ok {
		t.Errorf("dkimpy: %s", out)
	}
	// Our h= must not cover the other signature or trace fields.
	if h := sigTag(t, signed, "h"); strings.Contains(strings.ToLower(h), "dkim-signature") || strings.Contains(strings.ToLower(h), "received") {
		t.Errorf("h= signs trace or signature fields: %s", h)
	}
}

func TestTamperingBreaksSignature(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	signed := signMsg(t, s, "example.com", crlf(baseMsg))
	recs := records(s)
	i := bytes.Index(signed, []byte("Hello Bob"))
	body := bytes.Clone(signed)
	body[i] = 'J'
	topSubject := append(crlf("Subject: win a prize\n"), signed...)
	j := bytes.Index(signed, []byte("\r\n\r\n"))
	bottomSubject := append(append(bytes.Clone(signed[:j+2]), crlf("Subject: win a prize\n")...), signed[j+2:]...)
	bottomFrom := append(append(bytes.Clone(signed[:j+2]), crlf("From: ceo@example.com\n")...), signed[j+2:]...)
	for name, msg := range map[string][]byte{
		"body-byte": body, "subject-on-top": topSubject,
		"subject-at-bottom": bottomSubject, "from-at-bottom": bottomFrom,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			vs := goVerify(t, msg, recs)
			if len(vs) != 2 {
				t.Fatalf("got %d signatures, want 2", len(vs))
			}
			for _, v := range vs {
				if v.Err == nil {
					t.Errorf("go-msgauth accepted a tampered message (d=%s)", v.Domain)
				}
			}
			if ok, out := pyVerify(t, msg, recs); ok {
				t.Errorf("dkimpy accepted a tampered message: %s", out)
			}
		})
	}
	// Control: the untouched message passes both.
	for _, v := range goVerify(t, signed, recs) {
		if v.Err != nil {
			t.Fatalf("control: %v", v.Err)
		}
	}
	if ok, out := pyVerify(t, signed, recs); !ok {
		t.Fatalf("control: dkimpy: %s", out)
	}
}

// sigTag returns a tag of the first DKIM-Signature in msg, whitespace removed.
func sigTag(t *testing.T, msg []byte, tag string) string {
	t.Helper()
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	for _, f := range splitFields(msg[:end+2]) {
		if fieldName(f) != "dkim-signature" {
			continue
		}
		_, v, _ := strings.Cut(f, ":")
		for _, p := range strings.Split(v, ";") {
			k, val, _ := strings.Cut(p, "=")
			if strings.TrimSpace(k) == tag {
				return strings.Join(strings.Fields(val), "")
			}
		}
	}
	t.Fatalf("no %s= tag", tag)
	return ""
}

func TestHeaderListOversigns(t *testing.T) {
	msg := crlf("Received: x\nFrom: a@example.com\nTo: b@example.org\nTo: c@example.org\nSubject: s\nDKIM-Signature: v=1\nReturn-Path: <a@example.com>\nList-Unsubscribe: <mailto:u@example.com>\n\nbody\n")
	s := mustLoad(t, entry{"example.com", "ed", "ed25519.pem"})
	h := strings.Split(sigTag(t, signMsg(t, s, "example.com", msg), "h"), ":")
	count := map[string]int{}
	for _, n := range h {
		count[strings.ToLower(n)]++
	}
	want := map[string]int{"from": 2, "to": 3, "subject": 2, "cc": 1, "date": 1, "message-id": 1,
		"reply-to": 1, "in-reply-to": 1, "references": 1, "mime-version": 1, "content-type": 1,
		"content-transfer-encoding": 1, "list-unsubscribe": 1}
	for n, c := range want {
		if count[n] != c {
			t.Errorf("h= lists %s %d times, want %d (h=%v)", n, count[n], c, h)
		}
	}
	for _, n := range []string{"received", "return-path", "dkim-signature", "sender"} {
		if count[n] != 0 {
			t.Errorf("h= lists %s", n)
		}
	}
}

func TestDomainSelection(t *testing.T) {
	s := mustLoad(t,
		entry{"example.com", "parent", "ed25519.pem"},
		entry{"mail.example.com", "child", "rsa2048.pkcs8.pem"},
	)
	for _, c := range []struct{ from, d, sel string }{
		{"example.com", "example.com", "parent"},
		{"EXAMPLE.COM.", "example.com", "parent"},
		{"alerts.example.com", "example.com", "parent"},
		{"a.b.example.com", "example.com", "parent"},
		{"mail.example.com", "mail.example.com", "child"},
		{"x.mail.example.com", "mail.example.com", "child"},
		{"example.org", "", ""},
		{"com", "", ""},
		{"", "", ""},
	} {
		w, finish, err := s.Sign(c.from)
		if err != nil {
			t.Fatalf("Sign(%q): %v", c.from, err)
		}
		if c.d == "" {
			if w != nil || finish != nil {
				t.Errorf("Sign(%q): got a signer, want none", c.from)
			}
			continue
		}
		signed := signMsg(t, s, c.from, crlf("From: x@"+c.from+"\n\nhi\n"))
		if d, sel := sigTag(t, signed, "d"), sigTag(t, signed, "s"); d != c.d || sel != c.sel {
			t.Errorf("Sign(%q): d=%s s=%s, want d=%s s=%s", c.from, d, sel, c.d, c.sel)
		}
	}
}

func TestSignErrors(t *testing.T) {
	s := mustLoad(t, entry{"example.com", "ed", "ed25519.pem"})
	w, finish, err := s.Sign("example.com")
	if err != nil {
		t.Fatal(err)
	}
	big := crlf("X-Big: " + strings.Repeat("z", 64<<10) + "\n")
	var werr error
	for i := 0; i < 20 && werr == nil; i++ {
		_, werr = w.Write(big)
	}
	if !errors.Is(werr, ErrHeaderTooLarge) {
		t.Errorf("Write of a >1 MiB header: %v, want ErrHeaderTooLarge", werr)
	}
	if _, err := finish(); !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("finish after oversized header: %v", err)
	}
	if _, err := finish(); err == nil {
		t.Error("second finish succeeded")
	}

	// A header of exactly the limit, then the body, is fine.
	w, finish, _ = s.Sign("example.com")
	hdr := "From: a@example.com\r\nX-Pad: "
	pad := MaxHeaderBytes - len(hdr) - 2
	msg := hdr + strings.Repeat("p", pad) + "\r\n\r\nbody\r\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatalf("header of exactly %d bytes: %v", MaxHeaderBytes, err)
	}
	if sig, err := finish(); err != nil {
		t.Fatal(err)
	} else if vs := goVerify(t, append(sig, msg...), records(s)); vs[0].Err != nil {
		t.Fatal(vs[0].Err)
	}
}

// The signature block is wire-ready: CRLF-terminated fields whose lines are
// at most 998 characters (RFC 5322 §2.1.1), continuation lines starting with
// WSP. (go-msgauth folds at about 75 columns except h=, which it keeps on one
// line.)
func TestSignatureLayout(t *testing.T) {
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	w, finish, _ := s.Sign("example.com")
	w.Write(crlf(longHeaderMsg()))
	sig, err := finish()
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, sig, 2)
}

func checkLayout(t *testing.T, sig []byte, n int) {
	t.Helper()
	if !bytes.HasSuffix(sig, []byte("\r\n")) || bytes.Count(sig, []byte("DKIM-Signature:")) != n {
		t.Fatalf("bad signature block:\n%s", sig)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(sig), "\r\n"), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("bare CR or LF in %q", line)
		}
		if !strings.HasPrefix(line, "DKIM-Signature:") && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			t.Errorf("continuation line without WSP: %q", line)
		}
	}
}

// checkField refuses what must not go on the wire.
func TestCheckField(t *testing.T) {
	for _, bad := range []string{
		"DKIM-Signature: v=1",
		"DKIM-Signature: v=1;\r\nb=x\r\n",
		"DKIM-Signature: v=1;\r\n \r\n",
		"DKIM-Signature: " + strings.Repeat("x", 990) + "\r\n",
		"DKIM-Signature: v=1;\n b=x\r\n",
	} {
		if checkField(bad) == nil {
			t.Errorf("checkField(%q) accepted it", bad)
		}
	}
	if err := checkField("DKIM-Signature: v=1;\r\n\tb=x\r\n"); err != nil {
		t.Error(err)
	}
}

// A header with hundreds of copies of the signed fields still gets a
// signature whose h= fits on one line; the bottom copies stay signed.
func TestHugeHeaderList(t *testing.T) {
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "To: u%d@example.org\nResent-To: r%d@example.org\nContent-Transfer-Encoding: 7bit\n", i, i)
	}
	msg := crlf("From: a@example.com\n" + b.String() + "Subject: many\n\nbody\n")
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	signed := signMsg(t, s, "example.com", msg)
	checkLayout(t, signed[:len(signed)-len(msg)], 2)
	h := strings.Split(sigTag(t, signed, "h"), ":")
	count := map[string]int{}
	for _, n := range h {
		count[strings.ToLower(n)]++
	}
	if count["from"] != 2 || count["subject"] != 2 || count["to"] < 10 || count["to"] >= 300 {
		t.Errorf("h= counts %v", count)
	}
	recs := records(s)
	for _, v := range goVerify(t, signed, recs) {
		if v.Err != nil {
			t.Errorf("go-msgauth: %v", v.Err)
		}
	}
	if ok, out := pyVerify(t, signed, recs); !ok {
		t.Errorf("dkimpy: %s", out)
	}
	// Worst case of the fallback: every signable name 1000 times.
	var fields []string
	for _, n := range append(oversigned[:], signedIfPresent[:]...) {
		for range 1000 {
			fields = append(fields, n+": x\r\n")
		}
	}
	if l := len(strings.Join(headerList(countSignable([]byte(strings.Join(fields, "")))), ":")); l > maxHList {
		t.Errorf("h= of %d characters", l)
	}
}

// One Signer serves concurrent sessions (run with -race).
func TestSignConcurrent(t *testing.T) {
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	recs := records(s)
	done := make(chan []byte)
	for i := range 8 {
		go func() {
			msg := crlf(strings.Replace(baseMsg, "Hello Bob.", "Hello Bob "+strings.Repeat("!", i), 1))
			w, finish, err := s.Sign("example.com")
			if err != nil {
				done <- nil
				return
			}
			w.Write(msg)
			sig, err := finish()
			if err != nil {
				done <- nil
				return
			}
			done <- append(sig, msg...)
		}()
	}
	for range 8 {
		signed := <-done
		if signed == nil {
			t.Fatal("concurrent Sign failed")
		}
		for _, v := range goVerify(t, signed, recs) {
			if v.Err != nil {
				t.Error(v.Err)
			}
		}
	}
}

// refRelaxedBody is a direct, non-streaming transcription of RFC 6376 §3.4.4.
func refRelaxedBody(body string) string {
	lines := strings.Split(body, "\r\n")
	wsp := regexp.MustCompile(`[ \t]+`)
	for i, l := range lines {
		lines[i] = strings.TrimRight(wsp.ReplaceAllString(l, " "), " ")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

// Random bodies, written in random chunks (so CRLF, whitespace runs and the
// header/body boundary fall across Writes), get the bh= of the RFC's
// relaxed body canonicalisation.
func TestBodyHashRandom(t *testing.T) {
	if got := refRelaxedBody(" C \r\nD \t E\r\n\r\n\r\n"); got != " C\r\nD E\r\n" {
		t.Fatalf("reference canonicaliser: %q (RFC 6376 §3.4.6 example)", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{" ", "\t", "\r\n", "\r\n", "a", "bc", "\xe9"}
	s := mustLoad(t, entry{"example.com", "ed", "ed25519.pem"})
	for i := range 200 {
		var b strings.Builder
		for range r.IntN(60) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		body := b.String()
		msg := []byte("From: a@example.com\r\n\r\n" + body)
		w, finish, _ := s.Sign("example.com")
		for rest := msg; len(rest) > 0; {
			n := 1 + r.IntN(len(rest))
			w.Write(rest[:n])
			rest = rest[n:]
		}
		sig, err := finish()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(refRelaxedBody(body)))
		want := base64.StdEncoding.EncodeToString(sum[:])
		if got := sigTag(t, append(sig, msg...), "bh"); got != want {
			t.Fatalf("case %d %q: bh=%s, want %s", i, body, got, want)
		}
	}
}

func TestSplitFields(t *testing.T) {
	got := splitFields([]byte("A: 1\r\n\tcont\r\nB: 2\r\nC: 3\r\n"))
	want := []string{"A: 1\r\n\tcont\r\n", "B: 2\r\n", "C: 3\r\n"}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// countSignable counts what splitting the header into fields and reading
// each name (splitFields, fieldName) counts: any case, folded fields,
// spaces before the colon, names that only start like a signable one.
func TestCountSignable(t *testing.T) {
	hdr := "FROM: a\r\nfrom : b\r\nTo: c,\r\n d\r\nSubject: x\r\n\tFrom: not a field\r\n" +
		"X-From: y\r\nFromage: z\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
		"content-transfer-encoding\t: 7bit\r\nReceived: r\r\nCc: e\r\n"
	got := countSignable([]byte(hdr))
	var want counts
	for _, f := range splitFields([]byte(hdr)) {
		if i, ok := signableIndex[fieldName(f)]; ok {
			want[i]++
		}
	}
	if got != want {
		t.Errorf("countSignable = %v, want %v", got, want)
	}
	if got[signableIndex["from"]] != 2 || got[signableIndex["to"]] != 1 {
		t.Errorf("from=%d to=%d, want 2 and 1", got[signableIndex["from"]], got[signableIndex["to"]])
	}
	// A line that is not a field ends the header, as at the intake
	// (internal/hdrscan): what follows is body and is not counted.
	if c := countSignable([]byte("From: a\r\nno colon here\r\nCc: e\r\n")); c[signableIndex["cc"]] != 0 || c[signableIndex["from"]] != 1 {
		t.Errorf("after a non-field line: from=%d cc=%d, want 1 and 0", c[signableIndex["from"]], c[signableIndex["cc"]])
	}
}

// Wherever the writes split the message (a prefix written first, as
// cleanup does, then the rest in two writes cut at any byte), the
// signature verifies and hashes the same body and header list.
func TestSignAnySplit(t *testing.T) {
	s := mustLoad(t, entry{"example.com", "ed", "ed25519.pem"})
	recs := records(s)
	prefix := []byte("Received: from localhost by relay.test; Tue, 24 Nov 2026 04:00:00 +0000\r\n")
	msg := crlf(baseMsg + "second line\n\nafter an empty line\n")
	var wantBH, wantH string
	for i := 0; i <= len(msg); i++ {
		w, finish, err := s.Sign("example.com")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range [][]byte{prefix, msg[:i], msg[i:]} {
			if _, err := w.Write(p); err != nil {
				t.Fatalf("split %d: Write: %v", i, err)
			}
		}
		sig, err := finish()
		if err != nil {
			t.Fatalf("split %d: finish: %v", i, err)
		}
		signed := append(append(sig, prefix...), msg...)
		for _, v := range goVerify(t, signed, recs) {
			if v.Err != nil {
				t.Fatalf("split %d: go-msgauth: %v", i, v.Err)
			}
		}
		bh, h := sigTag(t, signed, "bh"), sigTag(t, signed, "h")
		if i == 0 {
			wantBH, wantH = bh, h
		} else if bh != wantBH || h != wantH {
			t.Fatalf("split %d: bh=%s h=%s, want bh=%s h=%s", i, bh, h, wantBH, wantH)
		}
	}
}
