package e2e

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// sendIDs submits one message and returns the queue IDs of relayd's 250
// reply ("Ok: queued as ID1 ID2").
func (r *relayd) sendIDs(t *testing.T, from string, to []string, msg string) []string {
	t.Helper()
	c := r.dial(t)
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	_, ids, ok := strings.Cut(resp.StatusText, "Ok: queued as ")
	if !ok {
		t.Fatalf("250 reply %q", resp.StatusText)
	}
	return strings.Fields(ids)
}

type listEntry struct {
	ID         string
	Recipients []struct {
		Address, State, Smarthost string
	}
}

func queueList(t *testing.T, cfg string) []listEntry {
	t.Helper()
	out, err := exec.Command(binary, "queue", "list", "--json", "--config", cfg).Output()
	if err != nil {
		t.Fatalf("queue list: %v", err)
	}
	var entries []listEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return entries
}

// A two-recipient message across two smarthosts with different from: two
// queue entries, each with its own recipient and route; each smarthost
// receives its own rewritten From, with a DKIM signature for that From's
// domain that dkimpy verifies.
func TestRouteSplitIdentities(t *testing.T) {
	def, ses, m365 := smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{})
	ses.Stop()
	m365.Stop()
	dir := t.TempDir()
	keysTOML, records := dkimSetup(t, dir, testKey{"shop.example", "s1", "rsa"}, testKey{"brand.example", "s1", "ed25519"})
	cfg := writeConfig(t, dir, def, "", "")
	appendConfig(t, cfg, keysTOML+
		smarthostTOML(t, dir, "ses", ses, `from = "noreply@shop.example"`)+
		smarthostTOML(t, dir, "m365", m365, `from = "news@brand.example"`)+`
[[route]]
recipient_domain = ["a.example"]
smarthost = "ses"

[[route]]
recipient_domain = ["b.example"]
smarthost = "m365"
`)
	r := start(t, dir, cfg)
	msg := "From: Alice Example <alice@app.example>\r\nTo: x@a.example, y@b.example\r\nSubject: two identities\r\n\r\nbody\r\n"
	ids := r.sendIDs(t, "alice@app.example", []string{"x@a.example", "y@b.example"}, msg)
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("queued as %v, want two entries", ids)
	}
	// Both smarthosts down: two entries wait, each for its own route.
	entries := queueList(t, cfg)
	want := map[string]string{ids[0]: "x@a.example ses", ids[1]: "y@b.example m365"}
	if len(entries) != 2 {
		t.Fatalf("queue list: %d entries, want 2: %+v", len(entries), entries)
	}
	for _, e := range entries {
		if len(e.Recipients) != 1 || e.Recipients[0].Address+" "+e.Recipients[0].Smarthost != want[e.ID] {
			t.Errorf("entry %s: %+v, want %s", e.ID, e.Recipients, want[e.ID])
		}
	}
	for i, to := range []string{"x@a.example", "y@b.example"} {
		r.waitLog(t, `id=`+ids[i]+` .*to=`+to+` .*status=queued`, 5*time.Second)
	}
	ses.Start()
	m365.Start()
	for _, c := range []struct {
		sh             *smtptest.Server
		to, from, sdid string
	}{{ses, "x@a.example", "noreply@shop.example", "shop.example"}, {m365, "y@b.example", "news@brand.example", "brand.example"}} {
		m := c.sh.WaitMessages(t, 1, 30*time.Second)[0]
		if len(m.To) != 1 || m.To[0] != c.to || m.From != c.from {
			t.Errorf("MAIL FROM:<%s> to %v, want <%s> to %s", m.From, m.To, c.from, c.to)
		}
		data := string(m.Data)
		for _, want := range []string{"From: \"Alice Example via relayd\" <" + c.from + ">\r\n", "Reply-To: Alice Example <alice@app.example>\r\n", "d=" + c.sdid + ";"} {
			if !strings.Contains(data, want) {
				t.Errorf("%s: message lacks %q:\n%s", c.to, want, data)
			}
		}
		if strings.Count(data, "\r\nFrom:") != 1 || strings.Count(data, "DKIM-Signature:") != 1 {
			t.Errorf("%s: not one From and one signature:\n%s", c.to, data)
		}
		if ok, out := verifyDKIMPy(t, m.Data, records); !ok {
			t.Errorf("%s: dkimpy does not verify:\n%s\n%s", c.to, out, data)
		}
	}
	if len(def.Messages()) != 0 {
		t.Errorf("the default smarthost got mail")
	}
	noFailures(t, r.logs())
}

// Route A's smarthost paces one message a minute: a message for A and B
// does not wait for A's next slot, B's recipient is delivered at once.
func TestRouteSplitRateLimit(t *testing.T) {
	def, slow := smarthost(t, smtptest.Faults{}), smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, def, "", "")
	appendConfig(t, cfg, smarthostTOML(t, dir, "slow", slow, "max_per_minute = 1")+`
[[route]]
recipient_domain = ["slow.example"]
smarthost = "slow"
`)
	r := start(t, dir, cfg)
	if err := r.send(t, "app@example.com", []string{"first@slow.example"}, "Subject: takes the slot\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	slow.WaitMessages(t, 1, 15*time.Second)
	sent := time.Now()
	ids := r.sendIDs(t, "app@example.com", []string{"second@slow.example", "fast@other.example"}, "Subject: both\r\n\r\nbody\r\n")
	if len(ids) != 2 {
		t.Fatalf("queued as %v, want two entries", ids)
	}
	m := def.WaitMessages(t, 1, 10*time.Second)[0]
	if len(m.To) != 1 || m.To[0] != "fast@other.example" {
		t.Errorf("default got %v", m.To)
	}
	if d := m.At.Sub(sent); d > 10*time.Second {
		t.Errorf("B's recipient took %v", d)
	}
	// A's is still waiting for its slot (the limit is in force).
	if n := len(slow.Messages()); n != 1 {
		t.Errorf("slow got %d messages within %v, want 1", n, time.Since(sent))
	}
	r.waitLog(t, `outbound rate limit reached`, 5*time.Second)
	if regexp.MustCompile(`status=(deferred|bounced|failed)`).MatchString(r.logs()) {
		t.Errorf("log:\n%s", r.logs())
	}
}

// The maildrop pickup goes through the same intake: a message the sendmail
// command left there while the daemon was down, for recipients of two
// smarthosts, is queued as one entry per smarthost and each gets its own.
func TestRouteSplitMaildrop(t *testing.T) {
	e := newSMEnv(t, "", false)
	partner := smarthost(t, smtptest.Faults{})
	appendConfig(t, e.config, smarthostTOML(t, e.dir, "partner", partner, "")+`
[[route]]
recipient_domain = ["partner.example"]
smarthost = "partner"
`)
	r := start(t, e.dir, e.config)
	r.stop() // the spool layout exists now
	e.mustShim(t, "Subject: dropped\n\nmarker-split-drop\n", "-i", "one@other.example", "two@partner.example")
	r = start(t, e.dir, e.config)
	for _, c := range []struct {
		sh *smtptest.Server
		to string
	}{{e.sh, "one@other.example"}, {partner, "two@partner.example"}} {
		m := smWait(t, c.sh, "marker-split-drop", 30*time.Second)
		if len(m.To) != 1 || m.To[0] != c.to {
			t.Errorf("got %v, want %s", m.To, c.to)
		}
	}
	r.waitLog(t, `picked up from maildrop.* id="\S+ \S+"`, 5*time.Second)
	if n := strings.Count(r.logs(), "status=queued"); n != 2 {
		t.Errorf("%d status=queued lines, want 2:\n%s", n, r.logs())
	}
	noFailures(t, r.logs())
}
