package dsn

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"relayd/internal/reply"
)

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
	addr = reply.OneLine(addr)
	t := strings.ToLower(strings.TrimSpace(reply.OneLine(typ)))
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
// (the queue's Outcome.Relay); when there is no name, the IP address is used.
func remoteHost(relay string) string {
	relay = reply.OneLine(relay)
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
