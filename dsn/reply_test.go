package dsn

import (
	"testing"
	"time"

	"relayd/internal/reply"
)

func TestStatusDerivation(t *testing.T) {
	cases := []struct {
		kind    Kind
		reply   string
		action  string
		status  string
		expired bool
		diag    string
	}{
		{Failed, "550 5.1.1 no such user", "failed", "5.1.1", false, "smtp; 550 5.1.1 no such user"},
		{Failed, "554 transaction failed", "failed", "5.0.0", false, "smtp; 554 transaction failed"},
		{Failed, "451 4.3.0 try later", "failed", "4.3.0", true, "smtp; 451 4.3.0 try later"},
		{Failed, "421 closing", "failed", "4.0.0", true, "smtp; 421 closing"},
		{Failed, "", "failed", "4.4.7", true, ""},
		{Failed, "i/o timeout", "failed", "4.4.7", true, "X-Relayd; i/o timeout"},
		{Delayed, "451 4.7.1 greylisted", "delayed", "4.7.1", false, "smtp; 451 4.7.1 greylisted"},
		{Delayed, "450 busy", "delayed", "4.0.0", false, "smtp; 450 busy"},
		{Delayed, "", "delayed", "4.0.0", false, ""},
		{Relayed, "250 2.0.0 Ok: queued", "relayed", "2.0.0", false, "smtp; 250 2.0.0 Ok: queued"},
		{Relayed, "250 2.6.0 queued", "relayed", "2.6.0", false, "smtp; 250 2.6.0 queued"},
		{Relayed, "", "relayed", "2.0.0", false, ""},
		{Failed, "550 5.1.1 non-ASCII ä\r\nreply", "failed", "5.1.1", false, "smtp; 550 5.1.1 non-ASCII ? reply"},
	}
	for _, c := range cases {
		r := report(c.kind, Recipient{Addr: "b@example.org", Reply: reply.Parse(c.reply)})
		if r.action != c.action || r.status != c.status || r.expired != c.expired || r.diag != c.diag {
			t.Errorf("%s %q: got %s %s expired=%v diag=%q, want %s %s %v %q",
				c.kind, c.reply, r.action, r.status, r.expired, r.diag, c.action, c.status, c.expired, c.diag)
		}
	}
}

func TestTypedAddressAndRemoteHost(t *testing.T) {
	addr := map[[2]string]string{
		{"rfc822", "b@example.org"}:   "rfc822; b@example.org",
		{"RFC822", "b@example.org"}:   "rfc822; b@example.org",
		{"rfc822", "jörg@example.de"}: `utf-8; j\x{F6}rg@example.de`,
		{"utf-8", "a+b=c\\d@x"}:       `utf-8; a\x{2B}b\x{3D}c\x{5C}d@x`,
		{"x-local", "me"}:             "x-local; me",
	}
	for in, want := range addr {
		if got := typedAddress(in[0], in[1]); got != want {
			t.Errorf("typedAddress(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
	hosts := map[string]string{
		"smtp.isp.example[192.0.2.1]:587": "smtp.isp.example",
		"[192.0.2.1]:25":                  "192.0.2.1",
		"[2001:db8::1]:25":                "2001:db8::1",
		"smtp.isp.example:587":            "smtp.isp.example",
		"smtp.isp.example":                "smtp.isp.example",
		"":                                "",
	}
	for in, want := range hosts {
		if got := remoteHost(in); got != want {
			t.Errorf("remoteHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSinceAndSubject(t *testing.T) {
	at := time.Date(2025, 11, 19, 8, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		5*24*time.Hour + time.Minute: "5 days",
		24 * time.Hour:               "1 day",
		4*time.Hour + 59*time.Minute: "4 hours",
		59 * time.Minute:             "59 minutes",
		-time.Hour:                   "",
	} {
		if got := since(at, at.Add(d)); got != want {
			t.Errorf("since(%v) = %q, want %q", d, got, want)
		}
	}
	if since(time.Time{}, at) != "" {
		t.Error("unknown arrival should give no duration")
	}
	for k, want := range map[Kind]string{
		Failed:  "Undelivered Mail Returned to Sender",
		Delayed: "Delayed Mail (still being retried)",
		Relayed: "Successful Mail Relay Notification",
	} {
		if got := Subject(k); got != want {
			t.Errorf("Subject(%s) = %q", k, got)
		}
	}
}
