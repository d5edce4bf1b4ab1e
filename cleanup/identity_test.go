package cleanup

import (
	"bufio"
	"strings"
	"testing"

	"relayd/envelope"
)

func TestApplyIdentity(t *testing.T) {
	for _, c := range []struct {
		name, hdr, envFrom       string
		wantFrom, wantReply      string // "" for wantReply: the original Reply-To stays
		wantEnv, wantRouteSender string
		changed                  bool
	}{
		{name: "display name", hdr: "From: Alice <alice@app.example>\r\n", envFrom: "alice@app.example",
			wantFrom: `From: "Alice via relayd" <noreply@shop.example>`, wantReply: "Reply-To: Alice <alice@app.example>",
			wantEnv: "noreply@shop.example", wantRouteSender: "alice@app.example", changed: true},
		{name: "bare address", hdr: "From: bob@app.example\r\n", envFrom: "bounce@app.example",
			wantFrom: `From: "bob@app.example via relayd" <noreply@shop.example>`, wantReply: "Reply-To: bob@app.example",
			wantEnv: "noreply@shop.example", wantRouteSender: "bounce@app.example", changed: true},
		{name: "Reply-To kept", hdr: "From: bob@app.example\r\nReply-To: <list@app.example>\r\n", envFrom: "bob@app.example",
			wantFrom: `From: "bob@app.example via relayd" <noreply@shop.example>`, wantReply: "Reply-To: <list@app.example>",
			wantEnv: "noreply@shop.example", wantRouteSender: "bob@app.example", changed: true},
		{name: "already the identity", hdr: "From: Shop <NoReply@shop.example>\r\n", envFrom: "noreply@shop.example",
			wantFrom: "From: Shop <NoReply@shop.example>", wantEnv: "noreply@shop.example"},
		{name: "notice keeps the null sender", hdr: "From: MAILER-DAEMON@relay.example\r\n", envFrom: "",
			wantFrom: `From: "MAILER-DAEMON@relay.example via relayd" <noreply@shop.example>`, wantReply: "Reply-To: MAILER-DAEMON@relay.example",
			wantEnv: "", changed: true},
		{name: "encoded word", hdr: "From: =?utf-8?q?J=C3=BCrgen?= <j@app.example>\r\n", envFrom: "j@app.example",
			wantFrom: `From: =?utf-8?q?J=C3=BCrgen_via_relayd?= <noreply@shop.example>`, wantEnv: "noreply@shop.example", wantRouteSender: "j@app.example", changed: true},
		{name: "quote in the name", hdr: "From: \"A \\\"B\\\" C\" <a@app.example>\r\n", envFrom: "a@app.example",
			wantFrom: `From: "A \"B\" C via relayd" <noreply@shop.example>`, wantEnv: "noreply@shop.example", wantRouteSender: "a@app.example", changed: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := readHeader(bufio.NewReader(strings.NewReader(c.hdr+"Subject: x\r\n\r\nbody\r\n")), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			env := envelope.Envelope{From: c.envFrom}
			if got := applyIdentity(h, &env, "noreply@shop.example"); got != c.changed {
				t.Errorf("changed = %v", got)
			}
			if f := h.get("from"); f == nil || strings.TrimSpace(string(f.raw)) != c.wantFrom {
				t.Errorf("From = %q, want %q", f.raw, c.wantFrom)
			}
			if h.count("from") != 1 {
				t.Errorf("%d From fields", h.count("from"))
			}
			if c.wantReply != "" {
				if f := h.get("reply-to"); f == nil || strings.TrimSpace(string(f.raw)) != c.wantReply || h.count("reply-to") != 1 {
					t.Errorf("Reply-To = %q, want %q", f.raw, c.wantReply)
				}
			}
			if env.From != c.wantEnv || env.RouteSender != c.wantRouteSender {
				t.Errorf("envelope from %q route sender %q", env.From, env.RouteSender)
			}
		})
	}
}
