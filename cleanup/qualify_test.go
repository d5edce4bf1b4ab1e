package cleanup

import (
	"bytes"
	"context"
	"net/mail"
	"strings"
	"testing"
)

func TestQualifyField(t *testing.T) {
	for in, want := range map[string]string{
		"To: root":                             "To: root@relay.example.com",
		"To: root, cron":                       "To: root@relay.example.com, cron@relay.example.com",
		"Cc: Admin <admin>":                    "Cc: Admin <admin@relay.example.com>",
		"Cc: \"Root, the\" <root> , bob@x.org": "Cc: \"Root, the\" <root@relay.example.com> , bob@x.org",
		"From: root (Cron Daemon)":             "From: root@relay.example.com (Cron Daemon)",
		"To: a.b":                              "To: a.b@relay.example.com",
		"To: \"john doe\"":                     "To: \"john doe\"@relay.example.com",
		"To: list: root, bob@x.org;":           "To: list: root@relay.example.com, bob@x.org;",
		"To: <@a.example,@b.example:root>":     "To: <@a.example,@b.example:root@relay.example.com>",
		"To: root,\r\n\tcron":                  "To: root@relay.example.com,\r\n\tcron@relay.example.com",
		"To:root":                              "To:root@relay.example.com",
		"To: <root >":                          "To: <root@relay.example.com >",
		// unchanged
		"To: bob@example.org":          "",
		"To: Bob <bob@example.org>":    "",
		"To: undisclosed-recipients:;": "",
		"To: two words":                "",
		"To: <>":                       "",
		"To: \"open":                   "",
		"To: (open":                    "",
		"To: <root":                    "",
		"To: root>":                    "",
		"To: <a> <b>":                  "",
		"To: root@":                    "",
		"To: root@vm":                  "",
		"To: ":                         "",
	} {
		raw := []byte(in + "\r\n")
		name := in[:strings.IndexByte(in, ':')]
		got, ok := qualifyField(raw, len(name)+1, "@relay.example.com")
		if want == "" {
			if ok {
				t.Errorf("qualifyField(%q) = %q, want unchanged", in, got)
			}
			continue
		}
		if !ok || string(got) != want+"\r\n" {
			t.Errorf("qualifyField(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// cron, logwatch and mdadm write "To: root": the envelope goes to
// rewrite.admin and the header leaves qualified with the hostname.
func TestUnqualifiedHeaderAddresses(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, func(c *Config) { c.Sender = "" })
	sub := smtpSub("admin@example.com")
	sub.Envelope.From = "root@relay.example.com"
	msg := "From: root (Cron Daemon)\nTo: root\nCc: cron, Bob <bob@example.org>\nSubject: Cron <root@vm> job\n\nout\n"
	id, err := c.Submit(context.Background(), sub, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	for _, want := range []string{
		"From: root@relay.example.com (Cron Daemon)\r\n", "To: root@relay.example.com\r\n",
		"Cc: cron@relay.example.com, Bob <bob@example.org>\r\n", "Subject: Cron <root@vm> job\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	m, err := mail.ReadMessage(strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"From", "To", "Cc"} {
		if _, err := m.Header.AddressList(k); err != nil {
			t.Errorf("%s does not parse after qualifying: %v", k, err)
		}
	}
}

// FuzzQualifyField: never panics, only inserts, and is idempotent.
func FuzzQualifyField(f *testing.F) {
	for _, s := range []string{"root", "A <b>, c", "g: a, \"b c\" <d>;", "(x) <@r:u> (y)", "\"a\\\"b\" , <>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n") {
			return
		}
		raw := []byte("To:" + v + "\r\n")
		got, ok := qualifyField(raw, 3, "@h.example")
		if !ok {
			return
		}
		if !bytes.Equal(bytes.ReplaceAll(got, []byte("@h.example"), nil), bytes.ReplaceAll(raw, []byte("@h.example"), nil)) {
			t.Fatalf("%q -> %q: more than insertions", raw, got)
		}
		if again, ok := qualifyField(got, 3, "@h.example"); ok {
			t.Fatalf("%q -> %q -> %q: not idempotent", raw, got, again)
		}
	})
}
