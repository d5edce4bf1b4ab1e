package e2e

// Issue 4 end to end: RFC 3464 notices, the RFC 3461 DSN extension and loop
// safety, against the real binary. Notices are read back with Python's
// email package (an independent MIME parser), never with our own code.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

const (
	dsnSender = "app@example.com"
	adminAddr = "admin@example.com"
	adminTOML = "[rewrite]\nadmin = \"" + adminAddr + "\""
	// daemonFrom is the notice From: field (issue 4, notice headers).
	daemonFrom = "Mail Delivery System <MAILER-DAEMON@" + hostname + ">"
)

// parsedNotice is what Python's email package (policy=default) sees in a
// notice.
type parsedNotice struct {
	ContentType     string              `json:"content_type"`
	ReportType      string              `json:"report_type"`
	From            string              `json:"from"`
	To              string              `json:"to"`
	AutoSubmitted   string              `json:"auto_submitted"`
	MessageID       string              `json:"message_id"`
	Date            string              `json:"date"`
	Defects         []string            `json:"defects"`
	Parts           []string            `json:"parts"`
	Text            string              `json:"text"`
	PerMessage      map[string]string   `json:"per_message"`
	Recipients      []map[string]string `json:"recipients"`
	OriginalHeaders string              `json:"original_headers"`
	OriginalSubject string              `json:"original_subject"`
	OriginalBody    string              `json:"original_body"`
}

const parseNoticePy = `
import email, email.policy, json, sys
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
low = lambda b: {k.lower(): str(v) for k, v in b.items()}
defects = []
for p in msg.walk():
    defects += [type(d).__name__ for d in p.defects]
out = {"content_type": msg.get_content_type(), "report_type": msg.get_param("report-type") or "",
       "from": str(msg.get("From", "")), "to": str(msg.get("To", "")),
       "auto_submitted": str(msg.get("Auto-Submitted", "")),
       "message_id": str(msg.get("Message-ID", "")), "date": str(msg.get("Date", "")),
       "defects": defects, "parts": [], "per_message": {}, "recipients": []}
for p in (msg.iter_parts() if msg.is_multipart() else []):
    ct = p.get_content_type()
    out["parts"].append(ct)
    if ct == "text/plain" and "text" not in out:
        out["text"] = p.get_content()
    elif ct == "message/delivery-status":
        blocks = p.get_payload()
        out["per_message"] = low(blocks[0])
        out["recipients"] = [low(b) for b in blocks[1:]]
    elif ct == "text/rfc822-headers":
        out["original_headers"] = p.get_content()
    elif ct == "message/rfc822":
        inner = p.get_payload()[0]
        out["original_subject"] = str(inner.get("Subject", ""))
        out["original_body"] = inner.get_payload(decode=True).decode("utf-8", "replace")
json.dump(out, sys.stdout)
`

// parseNotice runs Python's email parser over data.
func parseNotice(t *testing.T, data []byte) parsedNotice {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (CI installs it)", py)
		}
		t.Skipf("%s is missing", py)
	}
	f := filepath.Join(t.TempDir(), "notice.eml")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", parseNoticePy, f).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("python email parser: %v\n%s\nnotice:\n%s", err, stderr, data)
	}
	var p parsedNotice
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	return p
}

// checkReport asserts the notice structure every kind shares (RFC 3464 §2,
// RFC 6522 for multipart/report, RFC 3834 §5 for Auto-Submitted).
func checkReport(t *testing.T, m smtptest.Message, p parsedNotice, third string) {
	t.Helper()
	if m.From != "" {
		t.Errorf("notice envelope sender %q, want <>", m.From)
	}
	if p.ContentType != "multipart/report" || p.ReportType != "delivery-status" {
		t.Errorf("Content-Type %s report-type=%q", p.ContentType, p.ReportType)
	}
	want := []string{"text/plain", "message/delivery-status", third}
	if strings.Join(p.Parts, ",") != strings.Join(want, ",") {
		t.Errorf("parts %v, want %v", p.Parts, want)
	}
	if p.From != daemonFrom || p.AutoSubmitted != "auto-replied" || p.MessageID == "" || p.Date == "" {
		t.Errorf("notice headers: From=%q Auto-Submitted=%q Message-ID=%q Date=%q", p.From, p.AutoSubmitted, p.MessageID, p.Date)
	}
	if len(p.Defects) > 0 {
		t.Errorf("python found defects %v in:\n%s", p.Defects, m.Data)
	}
	if p.PerMessage["reporting-mta"] != "dns; "+hostname || p.PerMessage["arrival-date"] == "" {
		t.Errorf("per-message fields %v", p.PerMessage)
	}
	if strings.TrimSpace(p.Text) == "" {
		t.Errorf("empty human-readable part")
	}
}

// dsnSmarthost is the harness smarthost with extra options (e.g. DSN).
func dsnSmarthost(t *testing.T, o smtptest.Options) *smtptest.Server {
	o.RequireTLS = true
	o.Users = map[string]string{"relayuser": "s3cret pass"}
	return smtptest.New(t, o)
}

// noticesIn splits messages into notices (null sender) and the rest.
func noticesIn(msgs []smtptest.Message) (notices, others []smtptest.Message) {
	for _, m := range msgs {
		if m.From == "" {
			notices = append(notices, m)
		} else {
			others = append(others, m)
		}
	}
	return notices, others
}

// settle waits d and returns what the smarthost has then, so that a count
// taken afterwards also proves that nothing more arrived.
func settleMessages(sh *smtptest.Server, d time.Duration) []smtptest.Message {
	time.Sleep(d)
	return sh.Messages()
}

// rcptOpt is one recipient with its RCPT parameters.
type rcptOpt struct {
	addr string
	opts *smtp.RcptOptions
}

// sendDSN submits one message with RFC 3461 parameters.
func (r *relayd) sendDSN(t *testing.T, from string, mo *smtp.MailOptions, rcpts []rcptOpt, msg string) {
	t.Helper()
	c := r.dial(t)
	defer c.Close()
	if err := c.Mail(from, mo); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, rc := range rcpts {
		if err := c.Rcpt(rc.addr, rc.opts); err != nil {
			t.Fatalf("RCPT %s: %v", rc.addr, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	c.Quit()
}

// refuseFrom answers 451 after DATA to mail from a non-null sender, so
// originals stay deferred while notices (from <>) get through.
func refuseFrom(tries *atomic.Int64) func(*smtptest.Message) *smtp.SMTPError {
	return func(m *smtptest.Message) *smtp.SMTPError {
		if m.From == "" {
			return nil
		}
		tries.Add(1)
		return smtptest.Reply451()
	}
}

func rejectRcpts(addrs ...string) func(string) *smtp.SMTPError {
	return func(rcpt string) *smtp.SMTPError {
		for _, a := range addrs {
			if strings.EqualFold(rcpt, a) {
				return smtptest.Reply550()
			}
		}
		return nil
	}
}

func TestDSNBounceOneOfTwoRecipients(t *testing.T) {
	t.Parallel()
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org")})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	if err := r.send(t, dsnSender, []string{"bob@example.org", "nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	sh.WaitMessages(t, 2, 30*time.Second)
	notices, others := noticesIn(settleMessages(sh, 3*time.Second))
	if len(others) != 1 || strings.Join(others[0].To, ",") != "bob@example.org" || others[0].From != dsnSender {
		t.Fatalf("originals delivered: %+v", others)
	}
	if len(notices) != 1 {
		t.Fatalf("%d notices, want exactly 1:\n%s", len(notices), r.logs())
	}
	n := notices[0]
	if strings.Join(n.To, ",") != dsnSender {
		t.Errorf("notice sent to %v, want %s", n.To, dsnSender)
	}
	p := parseNotice(t, n.Data)
	checkReport(t, n, p, "text/rfc822-headers") // no RET: headers only (RFC 3461 §4.3)
	if len(p.Recipients) != 1 {
		t.Fatalf("per-recipient blocks %v, want 1 (only the failed one)", p.Recipients)
	}
	rc := p.Recipients[0]
	if rc["final-recipient"] != "rfc822; nobody@example.org" || rc["action"] != "failed" || rc["status"] != "5.1.1" {
		t.Errorf("recipient block %v", rc)
	}
	if !strings.Contains(rc["diagnostic-code"], "smtp; 550 5.1.1 smtptest: no such user") {
		t.Errorf("Diagnostic-Code %q lacks the smarthost's reply", rc["diagnostic-code"])
	}
	if !strings.Contains(rc["remote-mta"], "127.0.0.1") {
		t.Errorf("Remote-MTA %q", rc["remote-mta"])
	}
	if !strings.Contains(p.OriginalHeaders, "Subject: e2e") || strings.Contains(p.OriginalHeaders, "hello from the test") {
		t.Errorf("text/rfc822-headers part:\n%s", p.OriginalHeaders)
	}
	if !strings.Contains(p.Text, "nobody@example.org") {
		t.Errorf("human-readable part does not name the recipient:\n%s", p.Text)
	}
}

func TestDSNRetFullAttachesOriginal(t *testing.T) {
	t.Parallel()
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org")})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	r.sendDSN(t, dsnSender, &smtp.MailOptions{Return: smtp.DSNReturnFull, EnvelopeID: "env-full-1"},
		[]rcptOpt{{addr: "nobody@example.org"}}, plainMsg)
	n := sh.WaitMessages(t, 1, 30*time.Second)[0]
	p := parseNotice(t, n.Data)
	checkReport(t, n, p, "message/rfc822")
	if p.OriginalSubject != "e2e" || !strings.Contains(p.OriginalBody, "hello from the test\r\nsecond line") &&
		!strings.Contains(p.OriginalBody, "hello from the test\nsecond line") {
		t.Errorf("attached original: subject %q body %q", p.OriginalSubject, p.OriginalBody)
	}
	if p.PerMessage["original-envelope-id"] != "env-full-1" {
		t.Errorf("Original-Envelope-Id: %v", p.PerMessage)
	}
}

func TestDSNExpiryFailsWith4xx(t *testing.T) {
	t.Parallel()
	var tries atomic.Int64
	sh := smarthost(t, smtptest.Faults{MessageReply: refuseFrom(&tries)})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", "max_age = \"3s\"\ndelay_warning = \"0s\""))
	if err := r.send(t, dsnSender, []string{"bob@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	n := sh.WaitMessages(t, 1, 30*time.Second)[0]
	r.waitLog(t, `to=bob@example.org .*status=expired`, 5*time.Second)
	if tries.Load() < 1 {
		t.Errorf("expired without a delivery attempt")
	}
	p := parseNotice(t, n.Data)
	checkReport(t, n, p, "text/rfc822-headers")
	if len(p.Recipients) != 1 {
		t.Fatalf("recipient blocks %v", p.Recipients)
	}
	rc := p.Recipients[0]
	if rc["final-recipient"] != "rfc822; bob@example.org" || rc["action"] != "failed" || !regexp.MustCompile(`^4\.\d+\.\d+$`).MatchString(rc["status"]) {
		t.Errorf("expiry block %v, want Action: failed and Status: 4.x.x", rc)
	}
	if !strings.Contains(rc["diagnostic-code"], "451 4.3.0") {
		t.Errorf("Diagnostic-Code %q lacks the last 451", rc["diagnostic-code"])
	}
	if all := settleMessages(sh, 2*time.Second); len(all) != 1 {
		t.Errorf("%d messages after expiry, want the one notice", len(all))
	}
}

func TestDSNDelayNoticeOncePerMessage(t *testing.T) {
	t.Parallel()
	var tries atomic.Int64
	sh := smarthost(t, smtptest.Faults{MessageReply: refuseFrom(&tries)})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", "delay_warning = \"2s\"\nmax_age = \"1h\""))
	for _, to := range []string{"bob@example.org", "carol@example.org"} {
		if err := r.send(t, dsnSender, []string{to}, plainMsg); err != nil {
			t.Fatal(err)
		}
	}
	sh.WaitMessages(t, 2, 30*time.Second)
	// Several more retry rounds (1-2 s backoff) for both messages.
	after := tries.Load()
	deadline := time.Now().Add(30 * time.Second)
	for tries.Load() < after+6 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if tries.Load() < after+6 {
		t.Fatalf("only %d retries after the notices", tries.Load()-after)
	}
	msgs := sh.Messages()
	notices, others := noticesIn(msgs)
	if len(others) != 0 || len(notices) != 2 {
		t.Fatalf("%d notices and %d other messages after %d attempts; want 2 and 0:\n%s",
			len(notices), len(others), tries.Load(), r.logs())
	}
	about := map[string]int{}
	for _, n := range notices {
		p := parseNotice(t, n.Data)
		checkReport(t, n, p, "text/rfc822-headers")
		for _, rc := range p.Recipients {
			if rc["action"] != "delayed" || !strings.HasPrefix(rc["status"], "4.") || rc["will-retry-until"] == "" {
				t.Errorf("delay block %v", rc)
			}
			about[rc["final-recipient"]]++
		}
	}
	if about["rfc822; bob@example.org"] != 1 || about["rfc822; carol@example.org"] != 1 {
		t.Errorf("delay notices cover %v, want bob and carol once each", about)
	}
}

func TestDSNNullSenderNeverBounced(t *testing.T) {
	t.Parallel()
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org")})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, adminTOML, ""))
	if err := r.send(t, "", []string{"nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `to=nobody@example.org .*status=failed`, 20*time.Second)
	if all := settleMessages(sh, 3*time.Second); len(all) != 0 {
		t.Fatalf("a <> message that failed produced %d messages (to %v):\n%s", len(all), all[0].To, r.logs())
	}
	if strings.Contains(r.logs(), "status=bounced") {
		t.Errorf("a notice was generated for <>:\n%s", r.logs())
	}
}

func TestDSNFailedNoticeGoesToAdminOnce(t *testing.T) {
	t.Parallel()
	// The original fails, and so does the notice to its sender.
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org", dsnSender)})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, adminTOML, ""))
	if err := r.send(t, dsnSender, []string{"nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	sh.WaitMessages(t, 1, 30*time.Second)
	all := settleMessages(sh, 4*time.Second)
	if len(all) != 1 {
		t.Fatalf("%d messages, want exactly one (to the admin):\n%s", len(all), r.logs())
	}
	m := all[0]
	if m.From != "" || strings.Join(m.To, ",") != adminAddr {
		t.Fatalf("got %q -> %v, want <> -> %s", m.From, m.To, adminAddr)
	}
	p := parseNotice(t, m.Data)
	checkReport(t, m, p, "text/rfc822-headers")
	if len(p.Recipients) != 1 || p.Recipients[0]["final-recipient"] != "rfc822; "+dsnSender || p.Recipients[0]["action"] != "failed" {
		t.Errorf("admin notice is not about the failed notice to %s: %v", dsnSender, p.Recipients)
	}

	t.Run("admin fails too", func(t *testing.T) {
		sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org", dsnSender, adminAddr)})
		dir := t.TempDir()
		r := start(t, dir, writeConfig(t, dir, sh, adminTOML, ""))
		if err := r.send(t, dsnSender, []string{"nobody@example.org"}, plainMsg); err != nil {
			t.Fatal(err)
		}
		r.waitLog(t, `to=admin@example.com .*status=failed`, 30*time.Second)
		time.Sleep(4 * time.Second)
		logs := r.logs()
		if n := len(sh.Messages()); n != 0 {
			t.Errorf("%d messages delivered", n)
		}
		if !strings.Contains(logs, "dropped") {
			t.Errorf("the dropped admin notice was not logged:\n%s", logs)
		}
		if n := len(regexp.MustCompile(`(?m)^.*to=admin@example.com .*status=failed.*$`).FindAllString(logs, -1)); n != 1 {
			t.Errorf("the admin notice failed %d times, want once (then dropped):\n%s", n, logs)
		}
		if n := len(regexp.MustCompile(`status=failed`).FindAllString(logs, -1)); n != 3 {
			t.Errorf("%d failures, want 3 (original, notice, admin notice):\n%s", n, logs)
		}
	})
}

func TestDSNNotifyNever(t *testing.T) {
	t.Parallel()
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org", "ghost@example.org")})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	never := &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}
	r.sendDSN(t, dsnSender, nil, []rcptOpt{{"nobody@example.org", never}}, plainMsg)
	r.waitLog(t, `to=nobody@example.org .*status=failed`, 20*time.Second)
	// A second message with two failing recipients: only the one without
	// NOTIFY=NEVER is reported.
	r.sendDSN(t, dsnSender, nil, []rcptOpt{{"nobody@example.org", never}, {"ghost@example.org", nil}}, plainMsg)
	sh.WaitMessages(t, 1, 30*time.Second)
	all := settleMessages(sh, 3*time.Second)
	if len(all) != 1 {
		t.Fatalf("%d notices, want 1 (for ghost only):\n%s", len(all), r.logs())
	}
	p := parseNotice(t, all[0].Data)
	checkReport(t, all[0], p, "text/rfc822-headers")
	if len(p.Recipients) != 1 || p.Recipients[0]["final-recipient"] != "rfc822; ghost@example.org" {
		t.Errorf("notice covers %v, want ghost only", p.Recipients)
	}
}

func TestDSNNotifySuccessWithoutSmarthostDSN(t *testing.T) {
	t.Parallel()
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	r.sendDSN(t, dsnSender, &smtp.MailOptions{EnvelopeID: "env-ok-7"}, []rcptOpt{
		{"bob@example.org", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess},
			OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "Bob@Example.org"}},
		{"carol@example.org", nil},
	}, plainMsg)
	sh.WaitMessages(t, 2, 30*time.Second)
	notices, others := noticesIn(settleMessages(sh, 3*time.Second))
	if len(others) != 1 || len(notices) != 1 {
		t.Fatalf("%d originals and %d notices, want 1 and 1:\n%s", len(others), len(notices), r.logs())
	}
	if m := others[0]; m.MailOpts != nil && (m.MailOpts.EnvelopeID != "" || m.MailOpts.Return != "") {
		t.Errorf("DSN parameters sent to a smarthost without DSN: %+v", m.MailOpts)
	}
	n := notices[0]
	if strings.Join(n.To, ",") != dsnSender {
		t.Errorf("relayed notice to %v", n.To)
	}
	p := parseNotice(t, n.Data)
	checkReport(t, n, p, "text/rfc822-headers")
	if len(p.Recipients) != 1 {
		t.Fatalf("relayed notice covers %v, want bob only", p.Recipients)
	}
	rc := p.Recipients[0]
	if rc["action"] != "relayed" || rc["final-recipient"] != "rfc822; bob@example.org" ||
		!strings.HasPrefix(rc["status"], "2.") || rc["original-recipient"] != "rfc822; Bob@Example.org" {
		t.Errorf("relayed block %v", rc)
	}
	if p.PerMessage["original-envelope-id"] != "env-ok-7" {
		t.Errorf("per-message %v", p.PerMessage)
	}
}

func TestDSNParametersPassedToDSNSmarthost(t *testing.T) {
	t.Parallel()
	sh := dsnSmarthost(t, smtptest.Options{DSN: true})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	r.sendDSN(t, dsnSender, &smtp.MailOptions{Return: smtp.DSNReturnFull, EnvelopeID: "env-pass-9"}, []rcptOpt{
		{"bob@example.org", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure},
			OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "bob@example.org"}},
	}, plainMsg)
	sh.WaitMessages(t, 1, 30*time.Second)
	all := settleMessages(sh, 3*time.Second)
	if len(all) != 1 {
		t.Fatalf("%d messages, want the original only (the smarthost owns DSN now):\n%s", len(all), r.logs())
	}
	m := all[0]
	if m.MailOpts == nil || m.MailOpts.Return != smtp.DSNReturnFull || m.MailOpts.EnvelopeID != "env-pass-9" {
		t.Errorf("MAIL parameters %+v, want RET=FULL ENVID=env-pass-9", m.MailOpts)
	}
	if len(m.RcptOpts) != 1 || m.RcptOpts[0] == nil {
		t.Fatalf("RCPT parameters %v", m.RcptOpts)
	}
	ro := m.RcptOpts[0]
	var notify []string
	for _, n := range ro.Notify {
		notify = append(notify, string(n))
	}
	if strings.Join(notify, ",") != "SUCCESS,FAILURE" || ro.OriginalRecipientType != smtp.DSNAddressTypeRFC822 ||
		ro.OriginalRecipient != "bob@example.org" {
		t.Errorf("RCPT parameters NOTIFY=%v ORCPT=%s;%s", notify, ro.OriginalRecipientType, ro.OriginalRecipient)
	}
	if strings.Contains(r.logs(), "status=bounced") {
		t.Errorf("a relayed notice was generated although the smarthost took DSN over:\n%s", r.logs())
	}
}

var queuedIDRE = regexp.MustCompile(`msg=mail id=(\S+) from=<app@example.com> .*status=queued`)

// deferredMessage starts relayd with a smarthost that refuses mail from
// dsnSender (451, counted in tries) and queues one such message; it
// returns once the message is deferred, with its queue ID.
func deferredMessage(t *testing.T) (r *relayd, sh *smtptest.Server, cfg, id string, tries *atomic.Int64) {
	t.Helper()
	tries = new(atomic.Int64)
	sh = smarthost(t, smtptest.Faults{MessageReply: refuseFrom(tries)})
	dir := t.TempDir()
	cfg = writeConfig(t, dir, sh, adminTOML, "")
	r = start(t, dir, cfg)
	if err := r.send(t, dsnSender, []string{"bob@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `to=bob@example.org .*status=deferred`, 20*time.Second)
	mm := queuedIDRE.FindStringSubmatch(r.logs())
	if mm == nil {
		t.Fatalf("no queued line:\n%s", r.logs())
	}
	return r, sh, cfg, mm[1], tries
}

func TestDSNQueueDeleteSendsNoNotice(t *testing.T) {
	t.Parallel()
	r, sh, cfg, id, tries := deferredMessage(t)
	out, err := exec.Command(binary, "queue", "delete", "--config", cfg, id).CombinedOutput()
	if err != nil {
		t.Fatalf("relayd queue delete: %v\n%s", err, out)
	}
	r.waitLog(t, `id=`+regexp.QuoteMeta(id)+` .*status=deleted`, 10*time.Second)
	before := tries.Load()
	if all := settleMessages(sh, 4*time.Second); len(all) != 0 {
		t.Fatalf("delete produced %d messages (to %v)", len(all), all[0].To)
	}
	if tries.Load() != before {
		t.Errorf("the deleted message was tried again")
	}
	if strings.Contains(r.logs(), "status=bounced") {
		t.Errorf("a notice was generated for a deleted message:\n%s", r.logs())
	}
	list, err := exec.Command(binary, "queue", "list", "--config", cfg).CombinedOutput()
	if err != nil || bytes.Contains(list, []byte(id)) {
		t.Errorf("queue list after delete (%v):\n%s", err, list)
	}
}

// TestDSNLocalSenderNoticeGoesToAdmin: a notice never goes to a local name
// (root, root@hostname): it goes to rewrite.admin, or without one it is
// logged and dropped and the message leaves the queue.
func TestDSNLocalSenderNoticeGoesToAdmin(t *testing.T) {
	t.Parallel()
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org")})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, adminTOML, ""))
	if err := r.send(t, "root@"+hostname, []string{"nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	sh.WaitMessages(t, 1, 30*time.Second)
	all := settleMessages(sh, 3*time.Second)
	if len(all) != 1 || all[0].From != "" || strings.Join(all[0].To, ",") != adminAddr {
		for _, m := range all {
			t.Logf("delivered %q -> %v", m.From, m.To)
		}
		t.Fatalf("want exactly one notice, to %s:\n%s", adminAddr, r.logs())
	}

	t.Run("no admin", func(t *testing.T) {
		sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org")})
		dir := t.TempDir()
		cfg := writeConfig(t, dir, sh, "", "")
		r := start(t, dir, cfg)
		if err := r.send(t, "root@"+hostname, []string{"nobody@example.org"}, plainMsg); err != nil {
			t.Fatal(err)
		}
		r.waitLog(t, `notice dropped`, 20*time.Second)
		if all := settleMessages(sh, 3*time.Second); len(all) != 0 {
			t.Fatalf("a notice to a local sender reached the smarthost: %q -> %v", all[0].From, all[0].To)
		}
		if strings.Contains(r.logs(), "notice failed, will retry") {
			t.Errorf("the dropped notice is retried:\n%s", r.logs())
		}
		list, err := exec.Command(binary, "queue", "list", "--config", cfg).CombinedOutput()
		if err != nil || bytes.Contains(list, []byte("root")) {
			t.Errorf("message left in the queue (%v):\n%s", err, list)
		}
	})
}

const noticeDKIMPy = `
import dkim, sys
txt = open(sys.argv[2], "rb").read()
def dns(name, timeout=5):
    return txt if name == b"s1._domainkey.` + hostname + `." else None
sys.exit(0 if dkim.verify(open(sys.argv[1], "rb").read(), dnsfunc=dns) else 1)
`

// TestDSNNoticeIsDKIMSigned: a notice from MAILER-DAEMON@hostname is signed
// with the hostname's key, and dkimpy (an independent verifier) accepts it.
func TestDSNNoticeIsDKIMSigned(t *testing.T) {
	t.Parallel()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import dkim").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-dkim is missing (CI installs it): %v", err)
		}
		t.Skipf("python3-dkim is missing: %v", err)
	}
	sh := smarthost(t, smtptest.Faults{RcptReply: rejectRcpts("nobody@example.org")})
	dir := t.TempDir()
	key := filepath.Join(dir, "dkim.pem")
	out, err := exec.Command(binary, "dkim", "keygen", "--domain", hostname, "--selector", "s1", "--out", key).Output()
	if err != nil {
		t.Fatalf("relayd dkim keygen: %v", err)
	}
	var txt strings.Builder
	rr := regexp.MustCompile(`(?s)IN\s+TXT\s+\((.*?)\)`).FindStringSubmatch(string(out))
	if rr == nil {
		t.Fatalf("no TXT record in keygen output:\n%s", out)
	}
	for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(rr[1], -1) {
		txt.WriteString(q[1])
	}
	if !strings.Contains(txt.String(), "p=") {
		t.Fatalf("no DNS record in keygen output:\n%s", out)
	}
	rec := filepath.Join(dir, "record.txt")
	os.WriteFile(rec, []byte(txt.String()), 0o600)
	top := "[[dkim]]\ndomain = \"" + hostname + "\"\nselector = \"s1\"\nkey_file = \"" + key + "\"\n"
	r := start(t, dir, writeConfig(t, dir, sh, top, ""))
	if err := r.send(t, dsnSender, []string{"nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	n := sh.WaitMessages(t, 1, 30*time.Second)[0]
	if n.From != "" || !strings.Contains(headerBlock(n.Data), "d="+hostname) {
		t.Fatalf("notice not signed for %s:\n%s", hostname, headerBlock(n.Data))
	}
	f := filepath.Join(dir, "notice.eml")
	os.WriteFile(f, n.Data, 0o600)
	if out, err := exec.Command(py, "-c", noticeDKIMPy, f, rec).CombinedOutput(); err != nil {
		t.Fatalf("dkimpy rejects the notice's signature: %v\n%s\n%s", err, out, n.Data)
	}
}

// TestDSNQueueBounce: `relayd queue bounce ID` returns a deferred message to
// its sender at once: one failure notice with Status 5.0.0, no further
// attempt, and the message leaves the queue.
func TestDSNQueueBounce(t *testing.T) {
	t.Parallel()
	r, sh, cfg, id, tries := deferredMessage(t)
	out, err := exec.Command(binary, "queue", "bounce", "--config", cfg, id).CombinedOutput()
	if err != nil {
		t.Fatalf("relayd queue bounce: %v\n%s", err, out)
	}
	sh.WaitMessages(t, 1, 20*time.Second)
	before := tries.Load()
	all := settleMessages(sh, 3*time.Second)
	if len(all) != 1 || all[0].From != "" || strings.Join(all[0].To, ",") != dsnSender {
		t.Fatalf("want exactly one notice to %s, got %d messages:\n%s", dsnSender, len(all), r.logs())
	}
	n := parseNotice(t, all[0].Data)
	if len(n.Recipients) != 1 || n.Recipients[0]["action"] != "failed" || n.Recipients[0]["status"] != "5.0.0" {
		t.Errorf("notice recipients: %+v", n.Recipients)
	}
	if tries.Load() != before {
		t.Errorf("the bounced message was tried again")
	}
	list, err := exec.Command(binary, "queue", "list", "--config", cfg).CombinedOutput()
	if err != nil || bytes.Contains(list, []byte(id)) {
		t.Errorf("queue list after bounce (%v):\n%s", err, list)
	}
}
