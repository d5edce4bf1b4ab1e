package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

const plainMsg = "From: App <app@example.com>\r\nTo: bob@example.org\r\nSubject: e2e\r\n\r\nhello from the test\r\nsecond line\r\n"

// headerBlock returns the header of a message.
func headerBlock(data []byte) string {
	h, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	return string(h) + "\r\n"
}

func TestEndToEndCompletesAndRelays(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))

	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	m := sh.WaitMessages(t, 1, 20*time.Second)[0]
	if !m.TLS || m.AuthUser != "relayuser" {
		t.Errorf("delivered without TLS+AUTH: tls=%v auth=%q", m.TLS, m.AuthUser)
	}
	for _, h := range sh.Helos() {
		if h != hostname {
			t.Errorf("EHLO %q, want %q (helos: %v)", h, hostname, sh.Helos())
		}
	}
	if m.From != "app@example.com" || len(m.To) != 1 || m.To[0] != "bob@example.org" {
		t.Errorf("envelope %q -> %v", m.From, m.To)
	}
	hdr := headerBlock(m.Data)
	for name, want := range map[string]int{"\nDate: ": 1, "\nMessage-ID: <": 1, "Received: from app.test": 1, "\nFrom: App <app@example.com>": 1} {
		if got := strings.Count("\n"+hdr, name); got != want {
			t.Errorf("%q appears %d times, want %d:\n%s", name, got, want, hdr)
		}
	}
	if !strings.Contains(hdr, "by "+hostname+" (relayd) with ESMTP id ") {
		t.Errorf("Received field wrong:\n%s", hdr)
	}
	if !bytes.HasSuffix(m.Data, []byte("\r\n\r\nhello from the test\r\nsecond line\r\n")) {
		t.Errorf("body changed:\n%q", m.Data)
	}
	r.waitLog(t, `status=sent`, 5*time.Second)
}

// TestPythonSmtplibAndSwaks drives relayd with independent SMTP clients.
func TestPythonSmtplibAndSwaks(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	host, port, _ := net.SplitHostPort(r.addr)

	py := fmt.Sprintf(`
import smtplib, sys
s = smtplib.SMTP(%q, %s, local_hostname="py.test", timeout=20)
s.ehlo()
s.sendmail("py@example.com", ["carol@example.org"], b"Subject: from python\r\n\r\npython body\r\n")
s.quit()
`, host, port)
	if out, err := exec.Command("/usr/bin/python3", "-c", py).CombinedOutput(); err != nil {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	want := 1
	if _, err := exec.LookPath("swaks"); err == nil {
		out, err := exec.Command("swaks", "--server", host, "--port", port, "--helo", "swaks.test",
			"--from", "sw@example.com", "--to", "dave@example.org", "--header", "Subject: from swaks",
			"--body", "swaks body", "--timeout", "20").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		want++
	} else if os.Getenv("CI") == "true" {
		t.Fatal("swaks is not installed (CI installs it)")
	}
	msgs := sh.WaitMessages(t, want, 20*time.Second)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.To[0]] = true
		hdr := strings.ToLower("\n" + headerBlock(m.Data))
		if strings.Count(hdr, "\ndate: ") != 1 || strings.Count(hdr, "\nmessage-id: ") != 1 || !strings.Contains(hdr, "\nreceived: from ") {
			t.Errorf("want one Date, one Message-ID and our Received:\n%s", hdr)
		}
	}
	if !seen["carol@example.org"] {
		t.Errorf("python's message not delivered")
	}
	if want == 2 && !seen["dave@example.org"] {
		t.Errorf("swaks's message not delivered")
	}
}

func TestRetryUntilSmarthostComesUp(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	sh.Stop()
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, plainMsg); err != nil {
		t.Fatalf("not queued while smarthost is down: %v", err)
	}
	r.waitLog(t, `status=deferred`, 15*time.Second)
	sh.Start()
	sh.WaitMessages(t, 1, 30*time.Second)
}

func TestTemporaryThenSuccessAndPerRecipientFailure(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{
		FailFirst: 1,
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if rcpt == "nobody@example.org" {
				return smtptest.Reply550()
			}
			return nil
		},
	})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	if err := r.send(t, "app@example.com", []string{"bob@example.org", "nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	// Two messages arrive: the original for bob (after one 451), and the
	// notice to the sender about nobody (issue: bounces).
	msgs := sh.WaitMessages(t, 2, 30*time.Second)
	var toBob, notice int
	for _, m := range msgs {
		switch {
		case len(m.To) == 1 && m.To[0] == "bob@example.org":
			toBob++
		case m.From == "" && len(m.To) == 1 && m.To[0] == "app@example.com":
			notice++
			if !bytes.Contains(m.Data, []byte("nobody@example.org")) || !bytes.Contains(m.Data, []byte("550 5.1.1")) {
				t.Errorf("notice lacks the failed recipient or the reply:\n%s", m.Data)
			}
		default:
			t.Errorf("unexpected delivery %q -> %v", m.From, m.To)
		}
	}
	if toBob != 1 || notice != 1 {
		t.Errorf("to bob: %d, notices: %d; want 1 and 1", toBob, notice)
	}
	r.waitLog(t, `to=nobody@example.org .*status=failed.*dsn=5\.1\.1`, 10*time.Second)
	r.waitLog(t, `to=bob@example.org .*status=sent`, 10*time.Second)
	if strings.Contains(r.logs(), "to=bob@example.org relay") && strings.Contains(r.logs(), "to=bob@example.org status=failed") {
		t.Errorf("accepted recipient marked failed")
	}
}

func TestWrongPasswordDefersNeverBounces(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{AuthFail: true})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "[rewrite]\nadmin = \"admin@example.com\"", ""))
	for i := 0; i < 3; i++ {
		if err := r.send(t, "app@example.com", []string{"bob@example.org"}, plainMsg); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * time.Second) // several retry rounds at 1-2s backoff
	logs := r.logs()
	if strings.Contains(logs, "status=failed") || strings.Contains(logs, "status=bounced") || strings.Contains(logs, "status=expired") {
		t.Fatalf("a 535 failed or bounced mail:\n%s", logs)
	}
	if !strings.Contains(logs, "status=deferred") {
		t.Fatalf("no deferral logged:\n%s", logs)
	}
	if strings.Contains(logs, "s3cret") {
		t.Fatalf("password in the log")
	}
	if n := len(sh.Messages()); n != 0 {
		t.Fatalf("%d messages delivered with a wrong password", n)
	}
	// Fixing the password (here: the smarthost accepting again) delivers
	// the backlog.
	sh.SetFaults(smtptest.Faults{})
	sh.WaitMessages(t, 3, 30*time.Second)
}

func TestRestartWithQueue(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	sh.Stop()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	r := start(t, dir, cfg)
	for i := 0; i < 5; i++ {
		if err := r.send(t, "app@example.com", []string{fmt.Sprintf("u%d@example.org", i)}, plainMsg); err != nil {
			t.Fatal(err)
		}
	}
	r.stop()
	sh.Start()
	r2 := start(t, dir, cfg)
	_ = r2
	sh.WaitMessages(t, 5, 30*time.Second)
}

func TestOpenRelayRefused(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	// Rewrite the config with a narrow relay network and restart.
	r.stop()
	cfg, _ := os.ReadFile(r.config)
	cfg = bytes.Replace(cfg, []byte("[listen]\n"), []byte("[listen]\nrelay_networks = [\"127.0.0.1/32\"]\n"), 1)
	os.WriteFile(r.config, cfg, 0o644)
	r = start(t, dir, r.config)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", r.addr)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.Hello("outsider.test")
	if err := c.Mail("spam@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"victim@example.org", "victim%example.org@" + hostname, "\"victim@example.org\"@example.net"} {
		if err := c.Rcpt(rcpt, nil); code(err) != 554 {
			t.Errorf("RCPT %s from 127.0.0.2: got %v, want 554 5.7.1", rcpt, err)
		}
	}
	// 127.0.0.1 still relays.
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, plainMsg); err != nil {
		t.Errorf("from 127.0.0.1: %v", err)
	}
}

func TestLimits(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	b, _ := os.ReadFile(cfg)
	b = bytes.Replace(b, []byte("[listen]\n"), []byte("[listen]\nmax_message_bytes = 10000\nmax_recipients = 3\n"), 1)
	os.WriteFile(cfg, b, 0o644)
	r := start(t, dir, cfg)

	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 300)
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, big); code(err) != 552 {
		t.Errorf("oversize: %v, want 552", err)
	}
	c := r.dial(t)
	c.Mail("app@example.com", nil)
	var last error
	for i := 0; i < 4; i++ {
		last = c.Rcpt(fmt.Sprintf("r%d@example.org", i), nil)
	}
	if code(last) != 452 {
		t.Errorf("4th recipient: %v, want 452", last)
	}
	c.Close()

	// A client that goes silent mid-DATA is dropped after idle_timeout (3s).
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "EHLO slow.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: slow\r\n")
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(conn)
	if time.Since(start) > 15*time.Second {
		t.Errorf("slow client not dropped (err %v)", err)
	}
	if len(sh.Messages()) != 0 {
		t.Errorf("partial message delivered")
	}
}

// TestCrashLosesNothing kills relayd with SIGKILL during a load and checks
// that every message that got 250 is delivered after a restart.
func TestCrashLosesNothing(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	r := start(t, dir, cfg)

	const total, workers = 400, 8
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	killAt := int64(total / 3)
	killed := make(chan struct{})
	var once sync.Once
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				if i == killAt {
					once.Do(func() { r.kill(); close(killed) })
				}
				tag := fmt.Sprintf("crash-%04d", i)
				msg := "Subject: " + tag + "\r\n\r\n" + tag + "\r\n"
				c, err := smtp.Dial(r.addr)
				if err != nil {
					continue
				}
				if err := c.SendMail("load@example.com", []string{"sink@example.org"}, strings.NewReader(msg)); err == nil {
					mu.Lock()
					accepted[tag] = true
					mu.Unlock()
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	<-killed
	r2 := start(t, dir, cfg)
	_ = r2
	// Wait until every accepted message has arrived.
	deadline := time.Now().Add(120 * time.Second)
	for {
		got := map[string]int{}
		for _, m := range sh.Messages() {
			for tag := range accepted {
				if bytes.Contains(m.Data, []byte("\r\n\r\n"+tag+"\r\n")) {
					got[tag]++
				}
			}
		}
		lost, dups := 0, 0
		for tag := range accepted {
			if got[tag] == 0 {
				lost++
			}
			if got[tag] > 1 {
				dups += got[tag] - 1
			}
		}
		if lost == 0 {
			t.Logf("accepted=%d delivered_unique=%d lost=0 duplicates=%d", len(accepted), len(got), dups)
			if len(accepted) == 0 {
				t.Fatal("no message was accepted at all")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("accepted=%d lost=%d duplicates=%d after restart\n%s", len(accepted), lost, dups, r2.logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
}
