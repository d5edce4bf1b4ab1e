package cleanup

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"relayd/internal/hdrscan"
	"relayd/sendmail"
)

// The obsolete "Subject : hi" is a field (RFC 5322 §4.5.3): the header does
// not end there, so the real From and To stay header (issue 16).
func TestObsoleteFieldNameSyntax(t *testing.T) {
	h, err := readHeader(bufio.NewReader(strings.NewReader("Subject : hi\nFrom: a@x.example\nTo: b@y.example\n\nbody\n")), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.fields) != 3 || h.noSeparator || h.get("subject").value() != "hi" || h.get("from").value() != "a@x.example" {
		t.Errorf("fields %q noSeparator %v", h.fields, h.noSeparator)
	}
}

// fieldsOf splits a header block with the shared scanner, Bcc left out.
func fieldsOf(b []byte) (fields []string, body int) {
	body = hdrscan.Fields(b, func(name, raw []byte) bool {
		if !hdrscan.Lower(name, "bcc") {
			fields = append(fields, string(hdrscan.Canonical(raw)))
		}
		return true
	})
	return fields, body
}

// FuzzSendmailAndIntakeAgree: the sendmail command and the daemon's intake
// read the same header fields from the same input, and the intake reads
// back exactly the header the sendmail command passes on.
func FuzzSendmailAndIntakeAgree(f *testing.F) {
	for _, s := range []string{
		"Subject : hi\nFrom: a@x.example\nTo: b@y.example\n\nbody\n",
		"To: a,\n\tb\nBcc: c\n\nx\n", "A: 1\nnot a field\nB: 2\n\n", " x: y\n\nz\n", "A\t: 1\r\n\r\n", "\n\nbody",
		"X: " + strings.Repeat("y", 70000) + "\nZ: 1\n\nb\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.IndexByte(in, 0) >= 0 || bytes.Contains(bytes.ReplaceAll(in, []byte("\r\n"), nil), []byte("\r")) ||
			bytes.HasPrefix(in, []byte("From ")) {
			return // refused by the intake, or the sendmail command's mbox line
		}
		m, err := sendmail.ReadMessage(bytes.NewReader(in), sendmail.Options{IgnoreDots: true}, "x@y.example")
		if err != nil {
			return
		}
		out, err := io.ReadAll(m.Reader())
		if err != nil {
			return
		}
		want, _ := fieldsOf(m.Header)
		// The intake reading what the sendmail command sends.
		h, err := readHeader(bufio.NewReader(bytes.NewReader(out)), 1<<20)
		if err != nil {
			return
		}
		if h.noSeparator {
			t.Fatalf("the intake found no empty line after the sendmail command's header %q", m.Header)
		}
		var got []string
		for _, fl := range h.fields {
			if fl.name != "bcc" {
				got = append(got, string(fl.raw))
			}
		}
		if strings.Join(got, "") != strings.Join(want, "") || len(got) != len(want) {
			t.Fatalf("sendmail passed on %q, the intake read %q", want, got)
		}
		// The intake reading the input directly (normalised to CRLF).
		h2, err := readHeader(bufio.NewReader(bytes.NewReader(in)), 1<<20)
		if err != nil {
			return
		}
		got = got[:0]
		for _, fl := range h2.fields {
			if fl.name != "bcc" {
				got = append(got, string(fl.raw))
			}
		}
		if strings.Join(got, "") != strings.Join(want, "") || len(got) != len(want) {
			t.Fatalf("from %q sendmail read %q, the intake %q", in, want, got)
		}
	})
}
