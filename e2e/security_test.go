package e2e

// Attacks on the listeners: submission with AUTH (RFC 4954, RFC 6409,
// RFC 8314), open-relay tricks, SMTP smuggling and hostile input. Each test
// drives the real binary over loopback sockets, often with raw bytes so
// that no client library "fixes" the attack.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"relayd/internal/smtptest"
)

// writeCert writes a leaf certificate for "localhost" and 127.0.0.1 signed
// by ca as PEM files and returns their paths.
func writeCert(t *testing.T, dir string, ca *smtptest.CA) (certFile, keyFile string) {
	t.Helper()
	leaf := ca.Leaf(t, "localhost", "127.0.0.1")
	var cb bytes.Buffer
	for _, der := range leaf.Certificate {
		pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	kder, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, cb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// listenerAddr returns the address relayd logged for a listener mode.
func listenerAddr(t *testing.T, r *relayd, mode string) string {
	t.Helper()
	// The mode ends its value: "submission" is not "submissions"; more
	// attributes (component=) may follow.
	m := regexp.MustCompile(`(?m)msg=listening addr=(\S+) mode=` + mode + `(?: |$)`).FindStringSubmatch(r.logs())
	if m == nil {
		t.Fatalf("no %s listener in the log:\n%s", mode, r.logs())
	}
	return m[1]
}

// subEnv is a relayd with submission (STARTTLS) and submissions (implicit
// TLS) listeners and two users: app1 may send as *@example.com, app2 as
// *@example.net.
type subEnv struct {
	r          *relayd
	sh         *smtptest.Server
	sub, subs  string
	clientTLS  *tls.Config
	configPath string
}

func startSubmission(t *testing.T) *subEnv {
	t.Helper()
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	ca := smtptest.NewCA(t)
	certFile, keyFile := writeCert(t, dir, ca)
	var users strings.Builder
	for _, u := range []struct{ name, pass, pattern string }{{"app1", "pw-one", "*@example.com"}, {"app2", "pw-two", "*@example.net"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "[[users]]\nname = %q\npassword_hash = %q\nsenders = [%q]\n", u.name, h, u.pattern)
	}
	cfg := writeConfig(t, dir, sh, users.String(), "")
	b, _ := os.ReadFile(cfg)
	b = bytes.Replace(b, []byte("[listen]\n"), []byte(fmt.Sprintf(
		"[listen]\nsubmission = [\"127.0.0.1:0\"]\nsubmissions = [\"127.0.0.1:0\"]\ntls_cert = %q\ntls_key = %q\n", certFile, keyFile)), 1)
	os.WriteFile(cfg, b, 0o644)
	r := start(t, dir, cfg)
	r.waitLog(t, `mode=submissions`, 10*time.Second)
	return &subEnv{r: r, sh: sh, sub: listenerAddr(t, r, "submission"), subs: listenerAddr(t, r, "submissions"),
		clientTLS: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}, configPath: cfg}
}

// rawConn is a line-level SMTP client that sends exactly the bytes given.
type rawConn struct {
	t       *testing.T
	c       net.Conn
	br      *bufio.Reader
	timeout time.Duration // per reply; default 30s
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	if code, text := rc.reply(); code != 220 {
		t.Fatalf("greeting %d %s", code, text)
	}
	return rc
}

// reply reads one (possibly multi-line) reply; code 0 means the connection
// ended or timed out.
func (rc *rawConn) reply() (int, string) {
	if rc.timeout == 0 {
		rc.timeout = 30 * time.Second
	}
	rc.c.SetReadDeadline(time.Now().Add(rc.timeout))
	var text strings.Builder
	for {
		line, err := rc.br.ReadString('\n')
		if err != nil {
			return 0, text.String() + line
		}
		text.WriteString(line)
		if len(line) < 4 {
			return 0, text.String()
		}
		if line[3] != '-' {
			code, _ := strconv.Atoi(line[:3])
			return code, text.String()
		}
	}
}

// cmd sends raw (CRLF appended) and reads the reply.
func (rc *rawConn) cmd(raw string) (int, string) {
	rc.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(rc.c, raw+"\r\n"); err != nil {
		return 0, err.Error()
	}
	return rc.reply()
}

func TestSubmissionAuth(t *testing.T) {
	e := startSubmission(t)

	// Before STARTTLS: no AUTH advertised, MAIL refused with 530 5.7.0.
	rc := dialRaw(t, e.sub)
	n, ehlo := rc.cmd("EHLO lan.test")
	if n != 250 || !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("EHLO before TLS: want STARTTLS and no AUTH:\n%s", ehlo)
	}
	if code, text := rc.cmd("AUTH PLAIN AGFwcDEAcHctb25l"); code/100 != 5 {
		t.Errorf("AUTH in clear: %d %s, want 5xx", code, text)
	}
	if code, text := rc.cmd("MAIL FROM:<app1@example.com>"); code != 530 || !strings.Contains(text, "5.7.0") {
		t.Errorf("MAIL before AUTH: %d %s, want 530 5.7.0", code, text)
	}

	conn, err := net.Dial("tcp", e.sub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("AUTH after STARTTLS: %v %q", ok, mechs)
	}
	if err := c.Mail("app1@example.com", nil); code(err) != 530 {
		t.Errorf("MAIL after TLS, before AUTH: %v, want 530", err)
	}

	// Wrong passwords: 535 5.7.8 after a growing delay (auth: 1s, 2s, ...).
	t0 := time.Now()
	err = c.Auth(sasl.NewPlainClient("", "app1", "wrong"))
	d1 := time.Since(t0)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Fatalf("wrong password: %v, want 535 5.7.8", err)
	}
	t0 = time.Now()
	err = c.Auth(sasl.NewLoginClient("nosuchuser", "pw-one"))
	d2 := time.Since(t0)
	if code(err) != 535 {
		t.Fatalf("unknown user: %v, want 535", err)
	}
	t.Logf("failure delays: %v, %v", d1, d2)
	if d1 < 900*time.Millisecond || d2 < 1800*time.Millisecond {
		t.Errorf("failures not slowed down (delays %v, %v; want about 1s, 2s)", d1, d2)
	}

	if err := c.Auth(sasl.NewPlainClient("", "app1", "pw-one")); err != nil {
		t.Fatalf("right password: %v", err)
	}
	// Another user's domain: envelope sender refused.
	if err := c.Mail("boss@example.net", nil); code(err) != 553 || !strings.Contains(err.Error(), "") {
		t.Errorf("MAIL as another user's domain: %v, want 553 5.7.1", err)
	} else if se := err.(*smtp.SMTPError); se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("MAIL as another user's domain: %v, want 5.7.1", err)
	}
	c.Reset()
	// Own envelope, another user's header From: refused at the end of DATA.
	err = c.SendMail("app1@example.com", []string{"bob@example.org"},
		strings.NewReader("From: Boss <boss@example.net>\r\nSubject: forged\r\n\r\nx\r\n"))
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 553 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("header From of another user's domain: %v, want 553 5.7.1", err)
	}
	c.Reset()
	if err := c.SendMail("app1@example.com", []string{"bob@example.org"},
		strings.NewReader("From: App One <app1@example.com>\r\nSubject: via submission\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("legitimate submission: %v", err)
	}
	c.Quit()

	// Implicit TLS (RFC 8314), LOGIN mechanism, second user.
	c2, err := smtp.DialTLS(e.subs, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Hello("lan2.test"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Auth(sasl.NewLoginClient("app2", "pw-two")); err != nil {
		t.Fatalf("LOGIN on submissions: %v", err)
	}
	if err := c2.Mail("app1@example.com", nil); code(err) != 553 {
		t.Errorf("app2 as app1's domain: %v, want 553", err)
	}
	c2.Reset()
	if err := c2.SendMail("app2@example.net", []string{"carol@example.org"},
		strings.NewReader("From: app2@example.net\r\nSubject: via submissions\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("submissions: %v", err)
	}
	c2.Quit()

	msgs := e.sh.WaitMessages(t, 2, 30*time.Second)
	want := map[string]string{"bob@example.org": "app1", "carol@example.org": "app2"}
	for _, m := range msgs {
		user, ok := want[m.To[0]]
		if !ok {
			t.Errorf("unexpected delivery %v", m.To)
			continue
		}
		hdr := headerBlock(m.Data)
		if !regexp.MustCompile(`by ` + regexp.QuoteMeta(hostname) + ` \(relayd\) with ESMTPSA \(authenticated as ` + user + `\) id `).MatchString(hdr) {
			t.Errorf("Received does not record ESMTPSA and user %s:\n%s", user, hdr)
		}
		if strings.Contains(string(m.Data), "forged") {
			t.Errorf("forged From was relayed")
		}
	}
	if logs := e.r.logs(); strings.Contains(logs, "pw-one") || strings.Contains(logs, "pw-two") || strings.Contains(logs, "\"wrong\"") {
		t.Errorf("a password appears in the log")
	}
}

// TestOpenRelayTricks: a client outside relay_networks cannot relay with
// any address trick, in MAIL or RCPT, and nothing reaches the smarthost.
func TestOpenRelayTricks(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "[rewrite]\nadmin = \"admin@example.com\"", "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("[listen]\n"), []byte("[listen]\nrelay_networks = [\"127.0.0.1/32\"]\n"), 1), 0o644)
	r := start(t, dir, cfg)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", r.addr)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	defer conn.Close()
	rc := &rawConn{t: t, c: conn, br: bufio.NewReader(conn)}
	if code, _ := rc.reply(); code != 220 {
		t.Fatal("no greeting")
	}
	rc.cmd("EHLO outsider.test")
	mails := []string{
		"<spam@example.com>",
		"<>",
		"<victim%example.org@" + hostname + ">",
		"<@" + hostname + ":spam@example.com>",
		"<\"spam@example.org\"@" + hostname + ">",
		"<admin@example.com>", // the relay's own admin address
	}
	rcpts := []string{
		"<victim@example.org>",
		"<victim%example.org@" + hostname + ">",
		"<victim%example.org@localhost>",
		"<@" + hostname + ":victim@example.org>",
		"<@" + hostname + ",@mx.example.org:victim@example.org>",
		"<\"victim@example.org\">",
		"<\"victim@example.org\"@" + hostname + ">",
		"<\"victim%example.org\"@" + hostname + ">",
		"<victim@example.org@" + hostname + ">",
		"<victim!example.org@" + hostname + ">",
		"<example.org!victim>",
		"<victim@[127.0.0.1]>",
		"<VICTIM@EXAMPLE.ORG>",
		"<root>",
		"<postmaster>",
		"<victim@example.org> NOTIFY=NEVER",
	}
	for _, m := range mails {
		if code, text := rc.cmd("MAIL FROM:" + m); code != 250 {
			t.Logf("MAIL FROM:%s -> %d %s", m, code, strings.TrimSpace(text))
			rc.cmd("RSET")
			continue
		}
		for _, to := range rcpts {
			if code, text := rc.cmd("RCPT TO:" + to); code/100 != 5 {
				t.Errorf("MAIL FROM:%s RCPT TO:%s from 127.0.0.2: %d %s, want 5xx", m, to, code, text)
			}
		}
		if code, _ := rc.cmd("DATA"); code == 354 {
			t.Errorf("DATA accepted without an accepted recipient")
			rc.cmd("x\r\n.")
		}
		rc.cmd("RSET")
	}
	// BDAT (CHUNKING is advertised by go-smtp) does not help either.
	rc.cmd("MAIL FROM:<spam@example.com>")
	rc.cmd("RCPT TO:<victim@example.org>")
	if code, _ := rc.cmd("BDAT 5 LAST\r\nhello"); code == 250 {
		t.Errorf("BDAT accepted without recipients")
	}
	rc.cmd("QUIT")
	time.Sleep(500 * time.Millisecond)
	if n := len(sh.Messages()); n != 0 {
		t.Fatalf("%d messages relayed for an outsider", n)
	}
	if strings.Contains(r.logs(), "status=queued") {
		t.Fatalf("an outsider's message was queued:\n%s", r.logs())
	}
}

// TestSmuggling sends each end-of-data look-alike inside DATA, followed by a
// second transaction. relayd must answer exactly once to the DATA (and 221
// to QUIT), and the smarthost must see one message per 250, never the
// smuggled one (RFC 5321 §4.1.1.4 and §2.3.8: only <CRLF>.<CRLF> ends DATA).
func TestSmuggling(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))

	payloads := map[string]string{
		"LF.LF":     "\n.\n",
		"CR.CR":     "\r.\r",
		"LF.CRLF":   "\n.\r\n",
		"CRLF.LF":   "\r\n.\n",
		"CRLF.CR":   "\r\n.\r",
		"LF.CR":     "\n.\r",
		"CR.CRLF":   "\r.\r\n",
		"CRLF.NUL":  "\r\n.\x00\r\n",
		"CRLF..LF":  "\r\n..\n",
		"LFLF.LFLF": "\n\n.\n\n",
	}
	accepted := 0
	for name, eod := range payloads {
		rc := dialRaw(t, r.addr)
		rc.cmd("EHLO smuggler.test")
		rc.cmd("MAIL FROM:<app@example.com>")
		rc.cmd("RCPT TO:<bob@example.org>")
		if code, _ := rc.cmd("DATA"); code != 354 {
			t.Fatalf("%s: DATA refused", name)
		}
		msg := "Subject: carrier " + name + "\r\n\r\nbefore" + eod +
			"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
		code, text := rc.cmd(msg + "QUIT")
		switch {
		case code == 250:
			accepted++
		case code/100 == 5:
			t.Logf("%s: rejected: %s", name, strings.TrimSpace(text))
		default:
			t.Errorf("%s: DATA reply %d %s, want 250 or 5xx", name, code, text)
		}
		// The only further reply is the one to QUIT: no 250/354 from a
		// smuggled MAIL/RCPT/DATA.
		if code, text := rc.reply(); code != 221 {
			t.Errorf("%s: after the message: %d %q, want 221 to QUIT (a smuggled command was executed?)", name, code, text)
		}
	}
	time.Sleep(time.Second)
	sh.WaitMessages(t, accepted, 30*time.Second)
	time.Sleep(time.Second)
	msgs := sh.Messages()
	if len(msgs) != accepted {
		t.Errorf("smarthost got %d messages for %d accepted", len(msgs), accepted)
	}
	for _, m := range msgs {
		if m.From != "app@example.com" || len(m.To) != 1 || m.To[0] != "bob@example.org" {
			t.Errorf("smuggled envelope reached the smarthost: %s -> %v", m.From, m.To)
		}
		if bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\r")) ||
			bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("bare CR or LF passed on to the smarthost:\n%q", m.Data)
		}
		if !bytes.Contains(m.Data, []byte("Subject: smuggled")) {
			t.Errorf("the smuggled part vanished from the body instead of staying in it:\n%q", m.Data)
		}
	}
	t.Logf("%d of %d payloads accepted (normalised into the body), the rest rejected", accepted, len(payloads))
}

// vmHWM returns the peak resident set size of pid in kB.
func vmHWM(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no VmHWM")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// lineGen yields left bytes of 78-character CRLF lines without holding
// them in memory.
type lineGen struct {
	left int64
	pos  int
}

const genLine = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n"

func (g *lineGen) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], genLine[g.pos:])
		n += c
		g.pos = (g.pos + c) % len(genLine)
	}
	g.left -= int64(n)
	return n, nil
}

// TestHostileInput: each attack gets a clear code, the daemon's memory
// stays bounded, and a normal client is served throughout.
func TestHostileInput(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	pid := r.cmd.Process.Pid
	base := vmHWM(t, pid)
	delivered := 0
	normal := func(what string) {
		t.Helper()
		delivered++
		if err := r.send(t, "app@example.com", []string{"bob@example.org"}, "Subject: normal after "+what+"\r\n\r\nok\r\n"); err != nil {
			t.Errorf("normal client after %s: %v", what, err)
		}
	}
	// sendData opens a transaction and writes body (then CRLF.CRLF) from a
	// goroutine, so a server that stops reading cannot block the test.
	sendData := func(body io.Reader) (int, string) {
		rc := dialRaw(t, r.addr)
		rc.cmd("EHLO hostile.test")
		rc.cmd("MAIL FROM:<app@example.com>")
		rc.cmd("RCPT TO:<bob@example.org>")
		if code, _ := rc.cmd("DATA"); code != 354 {
			t.Fatal("DATA refused")
		}
		go func() {
			rc.c.SetWriteDeadline(time.Now().Add(5 * time.Minute))
			io.Copy(rc.c, io.MultiReader(body, strings.NewReader("\r\n.\r\n")))
		}()
		rc.timeout = 5 * time.Minute
		return rc.reply()
	}
	expect := func(what string, code int, text string, want ...int) {
		t.Helper()
		for _, w := range want {
			if code == w {
				t.Logf("%s: %s", what, strings.TrimSpace(text))
				return
			}
		}
		t.Errorf("%s: %d %q, want one of %v", what, code, text, want)
	}

	// A 1 MB header line: smtpd takes lines of any length (issue 16), and
	// cleanup's header limit (1 MiB) refuses it, streamed, never held.
	rc0, text := sendData(io.MultiReader(strings.NewReader("X-Long: "), strings.NewReader(strings.Repeat("a", 1<<20)+"\r\n\r\nbody\r\n")))
	expect("1 MB header line", rc0, text, 552)
	normal("long line")

	// 10,000 header fields (about 190 kB, under the 1 MiB header limit):
	// accepted and relayed intact.
	var many strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&many, "X-Many-%05d: value %d\r\n", i, i)
	}
	rc0, text = sendData(strings.NewReader(many.String() + "Subject: many headers\r\n\r\nbody\r\n"))
	expect("10,000 headers", rc0, text, 250)
	delivered++
	// 60,000 header fields (about 1.4 MB): over the header limit.
	var huge strings.Builder
	for i := 0; i < 60000; i++ {
		fmt.Fprintf(&huge, "X-Huge-%05d: value %d\r\n", i, i)
	}
	rc0, text = sendData(strings.NewReader(huge.String() + "\r\nbody\r\n"))
	expect("1.4 MB header", rc0, text, 552)
	normal("huge header")

	// NUL bytes in the header and in the body.
	rc0, text = sendData(strings.NewReader("Subject: nul\x00here\r\n\r\nbody\r\n"))
	expect("NUL in header", rc0, text, 550)
	rc0, text = sendData(strings.NewReader("Subject: nul\r\n\r\nbo\x00dy\r\n"))
	expect("NUL in body", rc0, text, 550)

	// Invalid UTF-8 and NUL in addresses: refused, session still usable.
	rc := dialRaw(t, r.addr)
	rc.cmd("EHLO hostile.test")
	for _, a := range []string{"<\xff\xfe@example.com>", "<app@exa\xc3mple.com>", "<a\x00b@example.com>", "<" + strings.Repeat("x", 300) + "@example.com>"} {
		n, text := rc.cmd("MAIL FROM:" + a)
		expect(fmt.Sprintf("MAIL FROM:%q", a), n, text, 501, 553, 500)
	}
	rc.cmd("MAIL FROM:<app@example.com>")
	for _, a := range []string{"<\xff@example.org>", "<bob@\xed\xa0\x80.example.org>", "<b\x00b@example.org>"} {
		n, text := rc.cmd("RCPT TO:" + a)
		expect(fmt.Sprintf("RCPT TO:%q", a), n, text, 501, 553, 500)
	}
	if n, text := rc.cmd("RCPT TO:<bob@example.org>"); n != 250 {
		t.Errorf("valid RCPT after invalid ones: %d %s", n, text)
	}
	rc.cmd("QUIT")

	// 1,100 recipients against max_recipients = 1000 (the default, as
	// Postfix's smtpd_recipient_limit): the rest get 452 4.5.3 (RFC 5321
	// §4.5.3.1.10), the message goes to the first 1000.
	c := r.dial(t)
	if err := c.Mail("app@example.com", nil); err != nil {
		t.Fatal(err)
	}
	ok, refused := 0, 0
	for i := 0; i < 1100; i++ {
		err := c.Rcpt(fmt.Sprintf("r%04d@example.org", i), nil)
		switch {
		case err == nil:
			ok++
		case code(err) == 452:
			refused++
		default:
			t.Fatalf("RCPT %d: %v", i, err)
		}
	}
	if ok != 1000 || refused != 100 {
		t.Errorf("1,100 recipients: %d accepted, %d refused with 452; want 1000 and 100", ok, refused)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: many recipients\r\n\r\nx\r\n")
	if err := w.Close(); err != nil {
		t.Errorf("DATA with 1000 recipients: %v", err)
	}
	c.Quit()
	delivered++

	// A client that never finishes DATA holds its connection only until
	// idle_timeout (3s); meanwhile others are served.
	stalled := dialRaw(t, r.addr)
	stalled.cmd("EHLO stall.test")
	stalled.cmd("MAIL FROM:<app@example.com>")
	stalled.cmd("RCPT TO:<bob@example.org>")
	stalled.cmd("DATA")
	io.WriteString(stalled.c, "Subject: never ends\r\n\r\nhalf a bo")
	normal("a stalled DATA")
	t0 := time.Now()
	rc0, text = stalled.reply()
	if waited := time.Since(t0); waited > 15*time.Second {
		t.Errorf("stalled client held for %v", waited)
	}
	t.Logf("stalled DATA: dropped with %d %q", rc0, strings.TrimSpace(text))

	// 500 MB against the 25 MB limit, streamed from a generator:
	// refused with 552 and never held in memory.
	before := vmHWM(t, pid)
	t0 = time.Now()
	rc0, text = sendData(io.MultiReader(strings.NewReader("Subject: huge\r\n\r\n"), &lineGen{left: 500 << 20}))
	expect("500 MB message", rc0, text, 552)
	t.Logf("500 MB message answered after %v", time.Since(t0).Round(time.Millisecond))
	normal("500 MB")

	sh.WaitMessages(t, delivered, 60*time.Second)
	for _, m := range sh.Messages() {
		if bytes.Contains(m.Data, []byte("Subject: many headers")) {
			if n := bytes.Count(m.Data, []byte("\r\nX-Many-")); n != 10000 {
				t.Errorf("10,000-header message relayed with %d of them", n)
			}
		}
		if bytes.Contains(m.Data, []byte("never ends")) || bytes.Contains(m.Data, []byte("Subject: huge")) {
			t.Errorf("a refused or unfinished message was relayed")
		}
	}
	peak := vmHWM(t, pid)
	t.Logf("relayd (race build) peak RSS: %d kB at start, %d kB before the 500 MB message, %d kB at the end", base, before, peak)
	if peak-base > 256<<10 {
		t.Errorf("peak RSS grew by %d kB: a message is being held in memory", peak-base)
	}
}
