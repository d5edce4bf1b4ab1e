package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

// smarthostTOML is a [[smarthost]] table for sh with the test login.
func smarthostTOML(t *testing.T, dir, name string, sh *smtptest.Server, extra string) string {
	t.Helper()
	pw := filepath.Join(dir, name+".secret")
	os.WriteFile(pw, []byte("s3cret pass\n"), 0o600)
	return fmt.Sprintf("[[smarthost]]\nname = %q\naddress = %q\nca_file = %q\nusername = \"relayuser\"\npassword_file = %q\ntimeout = \"5s\"\n%s\n",
		name, sh.Addr(), sh.CA().WritePEM(t), pw, extra)
}

func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, []byte("\n"+text)...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// byRcpt finds the message a smarthost received for rcpt.
func byRcpt(msgs []smtptest.Message, rcpt string) *smtptest.Message {
	for i := range msgs {
		for _, to := range msgs[i].To {
			if to == rcpt {
				return &msgs[i]
			}
		}
	}
	return nil
}

func noFailures(t *testing.T, logs string) {
	t.Helper()
	for _, bad := range []string{"status=failed", "status=bounced", "status=expired"} {
		if strings.Contains(logs, bad) {
			t.Errorf("log has %q:\n%s", bad, logs)
		}
	}
}

// Routing by envelope sender, header From and recipient domain, through
// three smarthosts; the log names the smarthost (relay=NAME[ip]:port).
func TestRoutesChooseSmarthost(t *testing.T) {
	def, ses, m365 := smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, def, "", "")
	appendConfig(t, cfg, smarthostTOML(t, dir, "ses", ses, "")+smarthostTOML(t, dir, "m365", m365, "")+`
[[route]]
sender_domain = ["shop.example"]
smarthost = "ses"

[[route]]
from_domain = ["brand.example"]
smarthost = "m365"

[[route]]
recipient_domain = ["partner.example"]
smarthost = "ses"
`)
	r := start(t, dir, cfg)
	for _, m := range []struct{ from, hdrFrom, to string }{
		{"app@eu.shop.example", "app@eu.shop.example", "a@other.example"}, // sender_domain, subdomain
		{"app@plain.example", "News <news@brand.example>", "b@other.example"},
		{"app@plain.example", "app@plain.example", "c@partner.example"},
		{"app@plain.example", "app@plain.example", "d@other.example"},
	} {
		msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: route\r\n\r\nbody\r\n", m.hdrFrom, m.to)
		if err := r.send(t, m.from, []string{m.to}, msg); err != nil {
			t.Fatal(err)
		}
	}
	sesMsgs := ses.WaitMessages(t, 2, 30*time.Second)
	m365Msgs := m365.WaitMessages(t, 1, 30*time.Second)
	defMsgs := def.WaitMessages(t, 1, 30*time.Second)
	if byRcpt(sesMsgs, "a@other.example") == nil || byRcpt(sesMsgs, "c@partner.example") == nil {
		t.Errorf("ses got %v", sesMsgs)
	}
	if byRcpt(m365Msgs, "b@other.example") == nil {
		t.Errorf("m365 got %v", m365Msgs)
	}
	if byRcpt(defMsgs, "d@other.example") == nil {
		t.Errorf("default got %v", defMsgs)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(ses.Messages()) + len(m365.Messages()) + len(def.Messages()); n != 4 {
		t.Errorf("%d messages delivered, want 4", n)
	}
	_, sesPort, _ := strings.Cut(ses.Addr(), ":")
	r.waitLog(t, `to=a@other.example .*relay=ses\[127\.0\.0\.1\]:`+sesPort, 5*time.Second)
	r.waitLog(t, `to=b@other.example .*relay=m365\[`, 5*time.Second)
	// The default keeps the format it always had: host[ip]:port.
	r.waitLog(t, `to=d@other.example .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:`, 5*time.Second)
	noFailures(t, r.logs())
}

// A message whose two recipients take two smarthosts, one of them down:
// it is queued as two entries, one per route; the other recipient is
// delivered at once, the first once its smarthost is back, nothing
// bounces; queue list --json shows the waiting entry and its route.
func TestRouteSplitOneSmarthostDown(t *testing.T) {
	def, partner := smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{})
	def.Stop()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, def, "", "")
	appendConfig(t, cfg, smarthostTOML(t, dir, "partner", partner, "")+`
[[route]]
recipient_domain = ["partner.example"]
smarthost = "partner"
`)
	r := start(t, dir, cfg)
	msg := "From: app@example.com\r\nTo: one@other.example, two@partner.example\r\nSubject: split\r\n\r\nbody\r\n"
	ids := r.sendIDs(t, "app@example.com", []string{"one@other.example", "two@partner.example"}, msg)
	if len(ids) != 2 {
		t.Fatalf("queued as %v, want one entry per route", ids)
	}
	got := partner.WaitMessages(t, 1, 15*time.Second)
	if len(got[0].To) != 1 || got[0].To[0] != "two@partner.example" {
		t.Fatalf("partner got %v", got[0].To)
	}
	r.waitLog(t, `id=`+ids[0]+` .*to=one@other.example .*status=deferred`, 15*time.Second)
	r.waitLog(t, `id=`+ids[1]+` .*to=two@partner.example .*status=sent`, 5*time.Second)
	// More mail to the partner flows while the default is down.
	if err := r.send(t, "app@example.com", []string{"three@partner.example"}, "Subject: more\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	partner.WaitMessages(t, 2, 15*time.Second)

	// Only the default's entry waits, with its own recipient.
	entries := queueList(t, cfg)
	if len(entries) != 1 || entries[0].ID != ids[0] || len(entries[0].Recipients) != 1 ||
		entries[0].Recipients[0].Address != "one@other.example" || entries[0].Recipients[0].Smarthost != "default" {
		t.Errorf("queue list --json: %+v", entries)
	}

	def.Start()
	m := def.WaitMessages(t, 1, 30*time.Second)[0]
	if len(m.To) != 1 || m.To[0] != "one@other.example" {
		t.Errorf("default got %v", m.To)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(partner.Messages()); n != 2 {
		t.Errorf("partner got %d messages, want 2 (no duplicate)", n)
	}
	noFailures(t, r.logs())
}

// Reload applies new routes to queued mail: a message held by a down
// default smarthost goes through the new route at once.
func TestRouteReloadMovesQueuedMail(t *testing.T) {
	def, other := smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{})
	def.Stop()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, def, "", "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "min_backoff = \"1s\"\nmax_backoff = \"2s\"", "min_backoff = \"10m\"\nmax_backoff = \"1h\"", 1)), 0o644)
	appendConfig(t, cfg, smarthostTOML(t, dir, "other", other, ""))
	r := start(t, dir, cfg)
	if err := r.send(t, "app@example.com", []string{"x@moved.example"}, "Subject: move me\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `to=x@moved.example .*status=deferred`, 15*time.Second)
	appendConfig(t, cfg, "[[route]]\nrecipient_domain = [\"moved.example\"]\nsmarthost = \"other\"\n")
	r.cmd.Process.Signal(syscall.SIGHUP)
	r.waitLog(t, `configuration reloaded`, 20*time.Second)
	m := other.WaitMessages(t, 1, 15*time.Second)[0] // not after the 10 minute retry
	if m.To[0] != "x@moved.example" {
		t.Errorf("other got %v", m.To)
	}
	r.waitLog(t, `to=x@moved.example .*relay=other\[.*status=sent`, 5*time.Second)
	noFailures(t, r.logs())
}

// A smarthost with from: the header From and the envelope sender are
// rewritten at intake, before signing; dkimpy verifies the signature of
// the new From's domain; the author stays reachable through Reply-To.
func TestRouteIdentityRewrite(t *testing.T) {
	def, ses := smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	keysTOML, records := dkimSetup(t, dir, testKey{"shop.example", "s1", "rsa"})
	cfg := writeConfig(t, dir, def, "", "")
	appendConfig(t, cfg, keysTOML+smarthostTOML(t, dir, "ses", ses, `from = "noreply@shop.example"`)+`
[[route]]
sender_domain = ["app.example"]
smarthost = "ses"
`)
	r := start(t, dir, cfg)
	msg := "From: Alice Example <alice@app.example>\r\nTo: bob@other.example\r\nSubject: identity\r\n\r\nbody\r\n"
	if err := r.send(t, "alice@app.example", []string{"bob@other.example"}, msg); err != nil {
		t.Fatal(err)
	}
	// Already the account's address: not changed.
	own := "From: <noreply@shop.example>\r\nTo: carol@other.example\r\nReply-To: <help@shop.example>\r\nSubject: own\r\n\r\nbody\r\n"
	if err := r.send(t, "alice@app.example", []string{"carol@other.example"}, own); err != nil {
		t.Fatal(err)
	}
	msgs := ses.WaitMessages(t, 2, 30*time.Second)
	m := byRcpt(msgs, "bob@other.example")
	if m == nil {
		t.Fatalf("not delivered through ses: %v", msgs)
	}
	if m.From != "noreply@shop.example" {
		t.Errorf("MAIL FROM:<%s>, want noreply@shop.example", m.From)
	}
	data := string(m.Data)
	for _, want := range []string{"From: \"Alice Example via relayd\" <noreply@shop.example>\r\n", "Reply-To: Alice Example <alice@app.example>\r\n", "d=shop.example;"} {
		if !strings.Contains(data, want) {
			t.Errorf("message lacks %q:\n%s", want, data)
		}
	}
	if strings.Count(data, "\r\nFrom:") != 1 {
		t.Errorf("not exactly one From field:\n%s", data)
	}
	if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
		t.Errorf("dkimpy does not verify:\n%s\n%s", out, data)
	}
	o := string(byRcpt(msgs, "carol@other.example").Data)
	if !strings.Contains(o, "From: <noreply@shop.example>\r\n") || strings.Contains(o, "via relayd") || strings.Count(o, "\r\nReply-To:") != 1 {
		t.Errorf("own address changed:\n%s", o)
	}
	if len(def.Messages()) != 0 {
		t.Errorf("the default smarthost got mail")
	}
}

// A smarthost that answers 501 to MAIL FROM:<> (Amazon SES): relayd's
// notice through it goes with that smarthost's null_sender, once.
func TestRouteNullSender(t *testing.T) {
	def := smarthost(t, smtptest.Faults{RcptReply: func(rcpt string) *smtp.SMTPError {
		if rcpt == "nobody@other.example" {
			return smtptest.Reply550()
		}
		return nil
	}})
	ses := smarthost(t, smtptest.Faults{MailReply: func(from string) *smtp.SMTPError {
		if from == "" {
			return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Invalid MAIL FROM address provided"}
		}
		return nil
	}})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, def, "", "")
	appendConfig(t, cfg, smarthostTOML(t, dir, "ses", ses, `null_sender = "bounces@shop.example"`)+`
[[route]]
recipient_domain = ["shop.example"]
smarthost = "ses"
`)
	r := start(t, dir, cfg)
	if err := r.send(t, "app@shop.example", []string{"nobody@other.example"}, "From: app@shop.example\r\nSubject: to nobody\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	m := ses.WaitMessages(t, 1, 30*time.Second)[0]
	if m.From != "bounces@shop.example" || len(m.To) != 1 || m.To[0] != "app@shop.example" {
		t.Errorf("notice went MAIL FROM:<%s> to %v", m.From, m.To)
	}
	if !strings.Contains(string(m.Data), "nobody@other.example") {
		t.Errorf("notice does not name the recipient:\n%s", m.Data)
	}
	time.Sleep(2 * time.Second) // nothing more follows: no loop
	if n := len(ses.Messages()); n != 1 {
		t.Errorf("ses got %d messages, want 1", n)
	}
	if regexp.MustCompile(`relay=ses\[.*status=sent`).FindString(r.logs()) == "" {
		t.Errorf("no sent line through ses:\n%s", r.logs())
	}
}
