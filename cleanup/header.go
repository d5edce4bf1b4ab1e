package cleanup

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"

	"github.com/emersion/go-smtp"

	"relayd/internal/hdrscan"
)

// field is one header field with all its lines, CRLF-terminated.
type field struct {
	name string // lower case
	raw  []byte
}

// header is the parsed header block of a message.
type header struct {
	fields []field
	size   int
	// noSeparator: the header block ended at a line that is not a header
	// field rather than at an empty line; a separator is inserted.
	noSeparator bool
	// firstBody is that line, which belongs to the body.
	firstBody []byte
}

func (h *header) count(name string) int {
	n := 0
	for _, f := range h.fields {
		if f.name == name {
			n++
		}
	}
	return n
}

func (h *header) get(name string) *field {
	for i := range h.fields {
		if h.fields[i].name == name {
			return &h.fields[i]
		}
	}
	return nil
}

// valueAt is the offset of the field's value in raw, just after the ':'
// (which may follow whitespace: "Subject : hi").
func (f *field) valueAt() int { return len(f.raw) - len(hdrscan.Value(f.raw)) }

// value returns the unfolded value of a field.
func (f *field) value() string {
	v := f.raw[f.valueAt():]
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return strings.TrimSpace(string(v))
}

// readLine reads one line of at most limit bytes, normalised to end in CRLF.
// It rejects NUL and bare CR. At EOF a last line without newline is
// returned with CRLF added; io.EOF is returned only when nothing was read.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > limit {
			return nil, ErrHeaderTooLarge
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if len(line) == 0 {
			return nil, io.EOF
		}
		break
	}
	body := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if bytes.IndexByte(body, 0) >= 0 {
		return nil, ErrNUL
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		return nil, ErrBareCR
	}
	if len(body)+2 > limit { // a bare LF grew by one byte
		return nil, ErrHeaderTooLarge
	}
	return append(body, '\r', '\n'), nil
}

// readHeader reads the header block, up to and including the empty line
// that ends it (which is consumed and not stored).
func readHeader(br *bufio.Reader, limit int) (*header, error) {
	h := &header{}
	for {
		line, err := readLine(br, limit-h.size)
		if errors.Is(err, io.EOF) {
			return h, nil // header only, no body
		}
		if err != nil {
			return nil, err
		}
		h.size += len(line)
		if len(line) == 2 { // the empty line: end of header
			return h, nil
		}
		kind, name := hdrscan.Classify(line, len(h.fields) > 0)
		switch kind {
		case hdrscan.Continuation:
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw, line...)
			continue
		case hdrscan.Body:
			// Not a header field: the header block ended without its empty
			// line (a common script mistake); keep the line as body.
			h.noSeparator, h.firstBody = true, line
			return h, nil
		}
		// "Subject : hi" leaves as "Subject: hi" (RFC 5322 §4.5: accepted,
		// never generated; dkimpy refuses to verify the obsolete form).
		h.fields = append(h.fields, field{name: strings.ToLower(string(name)), raw: hdrscan.Canonical(line)})
	}
}

// addressOf returns the first address of an address-list field value,
// tolerating unqualified local names that net/mail refuses.
func addressOf(v string) (display, addr string) {
	if list, err := mail.ParseAddressList(v); err == nil && len(list) > 0 {
		return list[0].Name, list[0].Address
	}
	if i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i {
		return strings.Trim(strings.TrimSpace(v[:i]), `"`), strings.TrimSpace(v[i+1 : j])
	}
	return localWithComment(strings.TrimSpace(v))
}

// errorOf extracts the SMTP error of a read failure: go-smtp's size limit
// error passes through; anything else from the client connection is 451.
func errorOf(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message: "+err.Error())
}

// clone is a copy of h whose fields can be changed apart from h's (the
// fields' bytes are shared: they are replaced, never written to).
func (h *header) clone() *header {
	h2 := *h
	h2.fields = append([]field(nil), h.fields...)
	return &h2
}
