// Package reply is relayd's one vocabulary for SMTP replies: the reply
// code (RFC 5321 §4.2), the enhanced status code (RFC 3463, carried in
// replies per RFC 2034) and the text, how they are written on one line
// ("550 5.1.1 No such user") and how such a line is read back.
//
// The queue stores a recipient's last reply as a Reply (and its String
// form, for older readers); dsn, cleanup, upstream and the sendmail shim
// format and parse replies only through this package.
package reply

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/emersion/go-smtp"
)

// Reply is one SMTP reply, or a failure that had none (Code 0: a network
// or TLS error, whose description is Text).
type Reply struct {
	Code     int    `json:"code,omitempty"`     // RFC 5321 §4.2 reply code, 0 when there was no reply
	Enhanced string `json:"enhanced,omitempty"` // RFC 3463 "class.subject.detail", "" when absent
	Text     string `json:"text,omitempty"`     // one line (see OneLine)
}

// IsZero reports whether r holds nothing at all.
func (r Reply) IsZero() bool { return r == Reply{} }

// String renders r on one line: "550 5.1.1 text", "250 text" without an
// enhanced code, and the text alone when there is no reply code.
func (r Reply) String() string {
	text := OneLine(r.Text)
	if r.Code == 0 {
		return text
	}
	s := fmt.Sprintf("%03d", r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if text != "" {
		s += " " + text
	}
	return s
}

// Status returns the enhanced code when it is well formed and its class
// agrees with the reply code's first digit (RFC 2034 §4; RFC 3463 §2), or
// "" otherwise: the status a DSN may report as the peer's own.
func (r Reply) Status() string {
	if _, ok := ParseEnhanced(r.Enhanced); !ok || r.Code/100 != int(r.Enhanced[0]-'0') {
		return ""
	}
	return r.Enhanced
}

// FromSMTP is the reply an *smtp.SMTPError stands for, its text made one
// line. The enhanced code follows go-smtp's meaning of its two sentinels:
// smtp.NoEnhancedCode is "none" (the reply goes out without one), and
// smtp.EnhancedCodeNotSet ({0,0,0}, also what go-smtp's client reports for
// a reply that had none) is X.0.0 with X the reply code's class, which is
// what go-smtp's server writes on the wire for it (RFC 3463 §3.1: X.0.0
// is the "other undefined status" of each class).
func FromSMTP(se *smtp.SMTPError) Reply {
	r := Reply{Code: se.Code, Text: OneLine(se.Message)}
	switch se.EnhancedCode {
	case smtp.NoEnhancedCode:
	case smtp.EnhancedCodeNotSet:
		// RFC 3463 §3: the classes are 2, 4 and 5 only; a 3xx has none.
		if c := se.Code / 100; c == 2 || c == 4 || c == 5 {
			r.Enhanced = fmt.Sprintf("%d.0.0", c)
		}
	default:
		r.Enhanced = FormatEnhanced(se.EnhancedCode)
	}
	return r
}

// Format is FromSMTP(se).String(): "550 5.1.1 text".
func Format(se *smtp.SMTPError) string { return FromSMTP(se).String() }

// Enhanced is FromSMTP(se).Enhanced: the status code se goes out with.
func Enhanced(se *smtp.SMTPError) string { return FromSMTP(se).Enhanced }

// FormatEnhanced renders ec as it was received, "5.1.1", with no
// derivation: "" for both sentinels (a peer's reply without a code).
func FormatEnhanced(ec smtp.EnhancedCode) string {
	if ec == smtp.NoEnhancedCode || ec == smtp.EnhancedCodeNotSet {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// Peer renders a reply exactly as the peer gave it: like Format, but an
// absent enhanced code stays absent (see FormatEnhanced).
func Peer(code int, ec smtp.EnhancedCode, text string) string {
	return Reply{Code: code, Enhanced: FormatEnhanced(ec), Text: text}.String()
}

// ParseEnhanced parses an RFC 3463 §2 status code: class 2, 4 or 5, then
// subject and detail of one to three digits each.
func ParseEnhanced(s string) (smtp.EnhancedCode, bool) {
	var ec smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return ec, false
	}
	for i, p := range parts {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ec, false
		}
		ec[i], _ = strconv.Atoi(p)
	}
	return ec, true
}

// Parse reads a reply line such as "550 5.1.1 No such user" (or a
// multi-line reply's first line, "550-5.1.1 ..."). The enhanced code is
// taken only when it is well formed and its class agrees with the reply
// code (RFC 2034 §4); otherwise it stays part of the text. A line that
// does not start with a reply code 2xx-5xx has Code 0 and is all Text.
// Text is made one line. Parse(r.String()) == r for every r that String
// can produce from a well-formed reply.
func Parse(s string) Reply {
	s = OneLine(s)
	if len(s) < 3 || s[0] < '2' || s[0] > '5' || !isDigit(s[1]) || !isDigit(s[2]) ||
		(len(s) > 3 && s[3] != ' ' && s[3] != '-') {
		return Reply{Text: s}
	}
	r := Reply{Code: int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')}
	if len(s) > 4 {
		r.Text = strings.TrimLeft(s[4:], " ")
	}
	first, after, _ := strings.Cut(r.Text, " ")
	if _, ok := ParseEnhanced(first); ok && first[0] == s[0] {
		r.Enhanced, r.Text = first, strings.TrimSpace(after)
	}
	return r
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// OneLine makes external text safe for one log field, header or reply
// line: invalid UTF-8 becomes U+FFFD, every control character (C0, DEL,
// C1: CR and LF included) and every Unicode white space becomes a space,
// runs of spaces collapse to one, and the ends are trimmed. Non-ASCII
// letters stay.
func OneLine(s string) string {
	if isPlain(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// isPlain reports whether s is printable ASCII with single inner spaces
// and no space at either end: already one line.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || (c == ' ' && (i == 0 || i == len(s)-1 || s[i-1] == ' ')) {
			return false
		}
	}
	return true
}
