package cleanup

import (
	"encoding/binary"
	"io"
	"unicode/utf8"

	"relayd/queue"
)

// eightBit watches what is written through it for an octet above 127, so
// the envelope can say BODY=8BITMIME exactly when the content needs it
// (RFC 6152 §3); once one is seen, the rest passes unexamined.
type eightBit struct {
	w    io.Writer
	seen bool
}

func (e *eightBit) Write(p []byte) (int, error) {
	if !e.seen {
		e.seen = has8bit(p)
	}
	return e.w.Write(p)
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
func bodyType(env *queue.Envelope, h *header, eight bool) {
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
