package cleanup

import (
	"bytes"
	"encoding/binary"
	"io"
	"unicode/utf8"

	"relayd/envelope"
)

// watch looks at what is written through it: an octet above 127, so the
// envelope can say BODY=8BITMIME exactly when the content needs it (RFC
// 6152 §3), and a line over 998 octets (RFC 5322 §2.1.1), which the intake
// then re-encodes (longlines.go). The writes are CRLF-normalised.
type watch struct {
	w      io.Writer
	seen   bool // an 8-bit octet
	long   bool // a line over maxLine octets, CRLF excluded
	curLen int  // octets since the last LF
}

// maxLine is the longest line SMTP allows, without its CRLF.
const maxLine = 998

func (e *watch) Write(p []byte) (int, error) {
	if !e.seen {
		e.seen = has8bit(p)
	}
	if !e.long {
		e.lines(p)
	}
	return e.w.Write(p)
}

func (e *watch) lines(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			e.curLen += len(p)
			e.long = e.curLen > maxLine+1 // a CR may still come
			return
		}
		if e.curLen+i > maxLine+1 { // i counts the CR before the LF
			e.long = true
			return
		}
		e.curLen, p = 0, p[i+1:]
	}
}

// has8bit reports whether b holds an octet above 127, eight at a time.
func has8bit(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// bodyType sets what the envelope declares to the smarthost from what the
// message holds, not from what the client said (cron declares 8BITMIME for
// ASCII output; scripts send 8-bit text without declaring it):
//   - Body: "8BITMIME" when an octet is above 127, else "7BIT"; a client's
//     BINARYMIME is kept (RFC 3030).
//   - UTF8: SMTPUTF8 is needed when an envelope address is not ASCII or a
//     header field holds UTF-8 (RFC 6531 §3.2, RFC 6532 §3).
func bodyType(env *envelope.Envelope, h *header, eight bool) {
	if env.Body != "BINARYMIME" {
		env.Body = "7BIT"
		if eight {
			env.Body = "8BITMIME"
		}
	}
	env.UTF8 = !ascii(env.From)
	for _, r := range env.Rcpts {
		env.UTF8 = env.UTF8 || !ascii(r.Addr)
	}
	for _, f := range h.fields {
		if env.UTF8 {
			break
		}
		if f.name != "bcc" && f.name != "return-path" && has8bit(f.raw) && utf8.Valid(f.raw) {
			env.UTF8 = true
		}
	}
}

func ascii(s string) bool { return !has8bit([]byte(s)) }
