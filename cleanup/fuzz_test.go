package cleanup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"relayd/queue"
)

// FuzzParseAddress: an accepted envelope address is canonical (parsing it
// again gives the same), bounded and free of characters that could break
// an SMTP command line or a header.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"a@example.com", "", "@a,@b:c@d.example", "\"q@x\"@example.com", "root",
		"a%b@c", "x@[127.0.0.1]", "a@-bad.example", "\xff@example.com", "a@b@c", "A@EXAMPLE.COM."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, serr := ParseAddress(s)
		if serr != nil {
			if serr.Code/100 != 5 {
				t.Fatalf("%q: refusal %d is not permanent", s, serr.Code)
			}
			return
		}
		if len(a) > maxPath || !utf8.ValidString(a) || strings.ContainsAny(a, "\r\n\x00\t <>") {
			t.Fatalf("%q accepted as unsafe %q", s, a)
		}
		b, serr := ParseAddress(a)
		if serr != nil || b != a {
			t.Fatalf("not canonical: %q -> %q -> %q, %v", s, a, b, serr)
		}
	})
}

// FuzzSubmit runs whole messages through header parsing and completion
// into a real spool. Every refusal is an *smtp.SMTPError; every accepted
// message goes out with CRLF-only lines, no NUL, our Received first, a
// Date, Message-ID and From, and no Bcc.
func FuzzSubmit(f *testing.F) {
	for _, s := range []string{
		"Subject: hi\r\n\r\nbody\r\n",
		"From: A <a@example.com>\nTo: b@example.org\nBcc: secret@example.org\n\nbody\n",
		"Date: Mon, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n folded\r\n\r\n",
		"no header line\r\nSubject: x\r\n",
		"Subject: x\r\n\r\nbare\rcr\r\n",
		"Subject: \x00\r\n\r\n",
		"Received: a\r\nReceived: b\r\n\r\n.\r\n..\r\n",
		"From: \"unterminated <a@example.com\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	q, err := queue.Open(queue.Config{Dir: f.TempDir(), MinBackoff: time.Hour, Concurrency: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close() })
	c := New(Config{Hostname: "relay.example.com", Spool: SpoolOf(q.Create), MaxHeaderBytes: 4096, MaxMessageBytes: 1 << 16,
		Admin: "admin@example.com"})
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := c.Submit(context.Background(), smtpSub("b@example.org"), bytes.NewReader(data))
		if err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code < 400 || se.Code > 599 {
				t.Fatalf("refusal without an SMTP code: %v", err)
			}
			return
		}
		w := wire(t, q, id)
		q.Delete(id)
		if strings.Contains(strings.ReplaceAll(w, "\r\n", ""), "\r") || strings.Contains(strings.ReplaceAll(w, "\r\n", ""), "\n") ||
			strings.Contains(w, "\x00") || !strings.HasSuffix(w, "\r\n") {
			t.Fatalf("bad line endings or NUL on the wire:\n%q", w)
		}
		hdr, _, _ := strings.Cut(w, "\r\n\r\n")
		hdr = "\r\n" + strings.ToLower(hdr) + "\r\n"
		if !strings.HasPrefix(w, "Received: from ") {
			t.Fatalf("Received not first:\n%q", w)
		}
		for _, name := range []string{"date", "message-id", "from"} {
			if !strings.Contains(hdr, "\r\n"+name+":") {
				t.Fatalf("no %s field:\n%q", name, w)
			}
		}
		if strings.Contains(hdr, "\r\nbcc:") {
			t.Fatalf("Bcc kept:\n%q", w)
		}
	})
}

// FuzzReadHeader: the header reader stays within its limit and keeps every
// field CRLF-terminated.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("A: b\r\n c\r\n\r\n"), 64)
	f.Add([]byte(" leading fold\r\nA: b\n\n"), 10)
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		h, err := readHeader(bufio.NewReaderSize(bytes.NewReader(data), 16), limit)
		if err != nil {
			return
		}
		if h.size > limit {
			t.Fatalf("header of %d bytes over the limit %d", h.size, limit)
		}
		for _, fl := range h.fields {
			if !bytes.HasSuffix(fl.raw, []byte("\r\n")) || fl.name == "" {
				t.Fatalf("bad field %q", fl.raw)
			}
		}
	})
}
