package cleanup

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relayd/signer"
)

// An authenticated user limited to its own domain cannot hide another
// author in the From field(s).
func TestFromAllowedChecksEveryAddress(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	allowed := func(a string) bool { return strings.HasSuffix(a, "@allowed.example") }
	for _, tc := range []struct {
		hdr  string
		code int
	}{
		{"From: Me <me@allowed.example>\r\n", 0},
		{"From: me@allowed.example\r\nFrom: ceo@victim.example\r\n", 553},
		{"From: me@allowed.example, ceo@victim.example\r\n", 553},
		{"From: ceo@victim.example\r\n", 553},
		{"From: <<<broken\r\n", 553},
	} {
		sub := smtpSub("bob@example.org")
		sub.FromAllowed = allowed
		_, err := c.Submit(context.Background(), sub, strings.NewReader(tc.hdr+"Subject: s\r\n\r\nbody\r\n"))
		var se *smtp.SMTPError
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%q refused: %v", tc.hdr, err)
		case tc.code != 0 && (!errors.As(err, &se) || se.Code != tc.code):
			t.Errorf("%q: got %v, want %d", tc.hdr, err, tc.code)
		}
	}
}

// A header the intake accepts can always be signed: the intake's limit
// leaves the signer room for the prefix, so a large header is never a
// 451 that repeats forever.
func TestLargestHeaderIsSignable(t *testing.T) {
	pemBytes, _, err := signer.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "k.pem")
	if err := signer.WriteKeyFile(key, pemBytes); err != nil {
		t.Fatal(err)
	}
	s, errs := signer.Load([]signer.Entry{{Domain: "example.com", Selector: "s", KeyFile: key}}, signer.Options{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	q := newQueue(t)
	c := newCleanup(t, q, func(c *Config) { c.Signer = s })
	limit := c.cfg.Load().MaxHeaderBytes
	hdr := "From: app@example.com\r\nSubject: big\r\n"
	line := "X-Filler: " + strings.Repeat("x", 900) + "\r\n"
	for len(hdr)+len(line) < limit-100 {
		hdr += line
	}
	if _, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(hdr+"\r\nbody\r\n")); err != nil {
		t.Fatalf("a %d-byte header (limit %d) was refused: %v", len(hdr), limit, err)
	}
}
