package cleanup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
	"relayd/queue"
)

func newQueue(t *testing.T) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Config{Dir: t.TempDir(), MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

var fixed = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func newCleanup(t *testing.T, q *queue.Queue, mod func(*Config)) *Cleanup {
	cfg := Config{Hostname: "relay.example.com", Spool: SpoolOf(q.Create), Clock: func() time.Time { return fixed },
		Admin: "admin@example.com", Sender: "noreply@example.com"}
	if mod != nil {
		mod(&cfg)
	}
	return New(cfg)
}

func smtpSub(rcpts ...string) *Submission {
	s := &Submission{Origin: envelope.FromSMTP, Helo: "app.local", RemoteIP: netip.MustParseAddr("127.0.0.1"),
		RemoteHost: "localhost", Proto: "ESMTP", LocalUID: -1}
	s.Envelope.From = "app@example.com"
	for _, r := range rcpts {
		s.Envelope.Rcpts = append(s.Envelope.Rcpts, envelope.Recipient{Addr: r, State: envelope.Pending})
	}
	return s
}

// wire returns the committed message as it will go to the smarthost.
func wire(t *testing.T, q *queue.Queue, id string) string {
	t.Helper()
	rc, err := q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func TestCompletesMissingHeaders(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	msg := "Subject: hi\nTo: bob@example.org\n\nline one\nline two\n"
	id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	for _, want := range []string{
		"Received: from app.local (localhost [127.0.0.1])\r\n\tby relay.example.com (relayd) with ESMTP id " + id + "\r\n\tfor <bob@example.org>; Tue, 24 Nov 2026 10:00:00 +0000\r\n",
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n",
		"Message-ID: <" + id + ".",
		"From: <app@example.com>\r\n",
		"Subject: hi\r\nTo: bob@example.org\r\n\r\nline one\r\nline two\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "\nDate:")+strings.Count(got, "\nMessage-ID:") != 2 {
		t.Errorf("want exactly one Date and one Message-ID:\n%s", got)
	}
	if strings.Contains(strings.ReplaceAll(got, "\r\n", ""), "\n") {
		t.Errorf("bare LF left in output")
	}
}

func TestKeepsExistingHeadersAndRemovesBcc(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	hdr := "From: \"App\" <app@example.com>\r\nDate: Mon, 23 Nov 2026 09:00:00 -0500\r\nMessage-ID: <x@y>\r\nBcc: secret@example.org,\r\n  other@example.org\r\nSubject:  odd   spacing\r\n\tfolded\r\nReturn-Path: <x@y>\r\n"
	id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(hdr+"\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	want := "From: \"App\" <app@example.com>\r\nDate: Mon, 23 Nov 2026 09:00:00 -0500\r\nMessage-ID: <x@y>\r\nSubject:  odd   spacing\r\n\tfolded\r\n\r\nbody\r\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("headers changed:\n%q\nwant suffix\n%q", got, want)
	}
	if strings.Contains(got, "secret") || strings.Contains(got, "Return-Path") {
		t.Errorf("Bcc or Return-Path kept:\n%s", got)
	}
}

func TestRejections(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, func(c *Config) { c.MaxMessageBytes = 1000 })
	loop := strings.Repeat("Received: from x by y; Mon, 23 Nov 2026 09:00:00 -0500\r\n", 51)
	cases := []struct {
		name, msg string
		code      int
	}{
		{"bare CR in body", "Subject: x\r\n\r\nab\rcd\r\n", 550},
		{"bare CR in header", "Subject: x\ry\r\n\r\nbody\r\n", 550},
		{"NUL", "Subject: x\r\n\r\nab\x00cd\r\n", 550},
		{"loop", loop + "\r\nbody\r\n", 554},
		{"too big", "Subject: x\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n", 552},
	}
	for _, tc := range cases {
		_, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(tc.msg))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != tc.code {
			t.Errorf("%s: got %v, want code %d", tc.name, err, tc.code)
		}
	}
	n := 0
	q.List(func(*queue.Meta) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d rejected messages were queued", n)
	}
	// 50 Received fields are still fine.
	loop50 := strings.Repeat("Received: from x by y; Mon, 23 Nov 2026 09:00:00 -0500\r\n", 50)
	if _, err := newCleanup(t, q, nil).Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(loop50+"\r\nok\r\n")); err != nil {
		t.Errorf("50 Received: %v", err)
	}
}

func TestBodyNormalisationAcrossChunks(t *testing.T) {
	var out bytes.Buffer
	// A reader that yields one byte at a time splits every CR from its LF.
	in := "a\r\nb\nc\r\n\r\nlast"
	n, err := copyBody(&out, bufioOneByte(in), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\r\nb\r\nc\r\n\r\nlast\r\n"; out.String() != want || n != int64(len(want)) {
		t.Errorf("got %q (%d)", out.String(), n)
	}
	if _, err := copyBody(io.Discard, bufioOneByte("abc\r"), 1<<20); !errors.Is(err, ErrBareCR) {
		t.Errorf("trailing CR: %v", err)
	}
}

func TestLocalAddresses(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	for in, want := range map[string]string{"root": "admin@example.com", "cron@relay.example.com": "admin@example.com", "bob@example.org": "bob@example.org", "Bob@EXAMPLE.org": "Bob@example.org"} {
		got, err := c.Recipient(in)
		if err != nil || got != want {
			t.Errorf("Recipient(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"root": "noreply@example.com", "": "", "app@example.org": "app@example.org"} {
		got, err := c.Sender(in)
		if err != nil || got != want {
			t.Errorf("Sender(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	noAdmin := newCleanup(t, q, func(c *Config) { c.Admin = "" })
	if _, err := noAdmin.Recipient("root"); err == nil || err.Code != 550 {
		t.Errorf("local recipient without admin: %v", err)
	}
	for _, bad := range []string{"a\r\nb@x", "a@-bad-.com", "x@", "@a:b@c d"} {
		if _, err := c.Recipient(bad); err == nil {
			t.Errorf("Recipient(%q) accepted", bad)
		}
	}
	if got, err := c.Recipient("@a,@b:user@example.org"); err != nil || got != "user@example.org" {
		t.Errorf("source route: %q %v", got, err)
	}
}

func TestLocalFromRewritten(t *testing.T) {
	q := newQueue(t)
	c := newCleanup(t, q, nil)
	sub := smtpSub("admin@example.com")
	sub.RemoteIP, sub.LocalUID, sub.Origin = netip.Addr{}, 1000, envelope.FromLocal
	sub.Envelope.From = "noreply@example.com"
	id, err := c.Submit(context.Background(), sub, strings.NewReader("From: Cron Daemon <root>\nSubject: job\n\nout\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	if !strings.Contains(got, "From: \"Cron Daemon\" <noreply@example.com>\r\n") {
		t.Errorf("From not rewritten:\n%s", got)
	}
	if !strings.Contains(got, "by relay.example.com (relayd, from local uid 1000)") {
		t.Errorf("local Received missing:\n%s", got)
	}
}

type fakeSigner struct {
	fail bool
	buf  bytes.Buffer
}

func (f *fakeSigner) Sign(domain string) (io.Writer, func() ([]byte, error), error) {
	if domain != "example.com" {
		return nil, nil, nil
	}
	return &f.buf, func() ([]byte, error) {
		if f.fail {
			return nil, errors.New("key unreadable")
		}
		return []byte("DKIM-Signature: v=1; d=example.com\r\n"), nil
	}, nil
}

func TestSigning(t *testing.T) {
	q := newQueue(t)
	fs := &fakeSigner{}
	c := newCleanup(t, q, func(c *Config) { c.Signer = fs })
	id, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader("Subject: s\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := wire(t, q, id)
	if !strings.HasPrefix(got, "DKIM-Signature: v=1; d=example.com\r\nReceived: ") {
		t.Errorf("signature not prepended:\n%s", got)
	}
	if signed := fs.buf.String(); !strings.HasSuffix(got, signed) || !strings.Contains(signed, "From: <app@example.com>") {
		t.Errorf("signer did not see the wire message minus its signature:\n%q", signed)
	}
	fs.fail = true
	_, err = c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader("Subject: s\r\n\r\nbody\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("signing failure: got %v, want 451", err)
	}
	// A domain without a key is relayed unsigned.
	sub := smtpSub("bob@example.org")
	sub.Envelope.From = "x@other.example"
	if _, err := c.Submit(context.Background(), sub, strings.NewReader("Subject: s\r\n\r\nbody\r\n")); err != nil {
		t.Errorf("unsigned domain: %v", err)
	}
}

// closingSigner's writer is an io.Closer, like *signer.Signer's.
type closingSigner struct {
	finished, closed int
}

type closingWriter struct{ s *closingSigner }

func (w closingWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w closingWriter) Close() error                { w.s.closed++; return nil }

func (f *closingSigner) Sign(string) (io.Writer, func() ([]byte, error), error) {
	return closingWriter{f}, func() ([]byte, error) {
		f.finished++
		return []byte("DKIM-Signature: v=1; d=example.com\r\n"), nil
	}, nil
}

// The signer's writer is closed when a submission ends, also when it fails
// before finish (the real signer's goroutines would otherwise leak).
func TestSignerClosed(t *testing.T) {
	q := newQueue(t)
	fs := &closingSigner{}
	c := newCleanup(t, q, func(c *Config) { c.Signer = fs; c.MaxMessageBytes = 1000 })
	if _, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader("Subject: s\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if fs.finished != 1 || fs.closed != 1 {
		t.Errorf("accepted message: finish %d, Close %d times, want 1 and 1", fs.finished, fs.closed)
	}
	big := "Subject: s\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n"
	if _, err := c.Submit(context.Background(), smtpSub("bob@example.org"), strings.NewReader(big)); err == nil {
		t.Fatal("oversized message accepted")
	}
	if fs.finished != 1 || fs.closed != 2 {
		t.Errorf("rejected message: finish %d, Close %d times, want 1 and 2", fs.finished, fs.closed)
	}
}
