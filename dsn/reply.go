package dsn

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ParseReply splits an SMTP reply line such as "550 5.1.1 No such user"
// into its reply code (RFC 5321 §4.2), its enhanced status code (RFC 3463 /
// RFC 2034, "" when absent or malformed) and the remaining text.
//
// Multi-line replies stored as one line joined with "; " are accepted: only
// the first code is parsed. A reply whose enhanced code class disagrees with
// the reply code's first digit (e.g. "550 4.1.1") has its enhanced code
// ignored, as RFC 2034 §4 requires them to agree. When s does not start with
// a three-digit code, code is 0 and text is s (trimmed).
func ParseReply(s string) (code int, enhanced string, text string) {
	s = strings.TrimSpace(s)
	if len(s) < 3 || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) || s[0] < '2' || s[0] > '5' {
		return 0, "", s
	}
	if len(s) > 3 && s[3] != ' ' && s[3] != '-' {
		return 0, "", s
	}
	code = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	rest := ""
	if len(s) > 4 {
		rest = strings.TrimLeft(s[4:], " ")
	}
	first, after, _ := strings.Cut(rest, " ")
	if validEnhanced(first) && first[0] == s[0] {
		return code, first, strings.TrimSpace(after)
	}
	return code, "", rest
}

// validEnhanced reports whether e is class "." subject "." detail with
// class 2, 4 or 5, subject 1-3 digits and detail 1-3 digits (RFC 3463 §2).
func validEnhanced(e string) bool {
	parts := strings.Split(e, ".")
	if len(parts) != 3 {
		return false
	}
	if parts[0] != "2" && parts[0] != "4" && parts[0] != "5" {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
	}
	return true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// oneLine makes external text safe for a single header or field value:
// every control character (CR and LF included) becomes a space, runs of
// white space collapse to one space, invalid UTF-8 is replaced, and the
// result is trimmed. The result may still contain non-ASCII characters.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' ' || r == '\u2028' || r == '\u2029' {
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

// asciiOnly replaces every non-ASCII character of an already one-lined
// string with '?', for the US-ASCII message/delivery-status part.
func asciiOnly(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r >= utf8.RuneSelf {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// typedAddress renders an address for Final-Recipient / Original-Recipient
// (RFC 3464 §2.3.1, §2.3.2). ASCII addresses use the rfc822 type; others use
// the utf-8 type with utf-8-addr-xtext encoding (RFC 6533 §3), which keeps
// message/delivery-status pure ASCII.
func typedAddress(typ, addr string) string {
	addr = oneLine(addr)
	t := strings.ToLower(strings.TrimSpace(oneLine(typ)))
	if t == "" {
		t = "rfc822"
	}
	if t == "rfc822" && isASCII(addr) {
		return "rfc822; " + addr
	}
	if t != "rfc822" && t != "utf-8" {
		// An unknown address type: pass it on, made ASCII.
		return asciiOnly(t) + "; " + asciiOnly(addr)
	}
	return "utf-8; " + utf8AddrXtext(addr)
}

// utf8AddrXtext encodes s as RFC 6533 utf-8-addr-xtext: QCHAR stays as it
// is, everything else becomes \x{HEX}.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x21 && r <= 0x7e && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%X}`, r)
	}
	return b.String()
}

// splitORcpt splits a stored ORCPT value "type;addr" (already decoded from
// xtext by the SMTP server). ok is false when there is none.
func splitORcpt(orcpt string) (typ, addr string, ok bool) {
	typ, addr, ok = strings.Cut(orcpt, ";")
	if !ok || strings.TrimSpace(addr) == "" {
		return "", "", false
	}
	return strings.TrimSpace(typ), strings.TrimSpace(addr), true
}

// remoteHost extracts the host name from a relay string "host[ip]:port"
// (queue.Outcome.Relay); when there is no name, the IP address is used.
func remoteHost(relay string) string {
	relay = oneLine(relay)
	if relay == "" {
		return ""
	}
	if i := strings.IndexByte(relay, '['); i >= 0 {
		if i > 0 {
			return asciiOnly(relay[:i])
		}
		if j := strings.IndexByte(relay, ']'); j > i {
			return asciiOnly(relay[i+1 : j])
		}
	}
	if h, _, ok := strings.Cut(relay, " "); ok {
		relay = h
	}
	if i := strings.LastIndexByte(relay, ':'); i > 0 && strings.Count(relay, ":") == 1 {
		relay = relay[:i]
	}
	return asciiOnly(relay)
}
