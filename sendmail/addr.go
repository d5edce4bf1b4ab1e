package sendmail

import (
	"net/mail"
	"strings"
)

// parseAddrList extracts the addresses of an RFC 5322 address-list header
// value (section 3.4). It uses net/mail first and falls back to a tolerant
// split that accepts what scripts really write: unqualified local names
// ("root"), group syntax ("undisclosed-recipients:;"), and junk it skips.
func parseAddrList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for _, elem := range splitList(v) {
		if a := oneAddr(elem); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// splitList splits at commas, colons and semicolons outside quotes, angle
// brackets and comments. A colon ends a group's display name (RFC 5322
// section 3.4 group syntax) and a semicolon ends the group, so both are
// separators here; the name before a colon is dropped by oneAddr's caller
// only when it has no address form, which a display name never has.
func splitList(v string) []string {
	var out []string
	var cur strings.Builder
	quoted, angle, comment, esc := false, false, 0, false
	flush := func(group bool) {
		s := cur.String()
		cur.Reset()
		if !group {
			out = append(out, s)
		}
	}
	for _, r := range v {
		switch {
		case esc:
			esc = false
		case r == '\\' && (quoted || comment > 0):
			esc = true
		case quoted:
			if r == '"' {
				quoted = false
			}
		case comment > 0:
			if r == '(' {
				comment++
			} else if r == ')' {
				comment--
			}
			continue
		case r == '"':
			quoted = true
		case r == '(':
			comment++
			continue
		case r == '<':
			angle = true
		case r == '>':
			angle = false
		case !angle && r == ',', !angle && r == ';':
			flush(false)
			continue
		case !angle && r == ':':
			flush(true) // a group display name, not an address
			continue
		}
		cur.WriteRune(r)
	}
	flush(false)
	return out
}

// oneAddr returns the address in one list element, or "".
func oneAddr(elem string) string {
	elem = strings.TrimSpace(elem)
	if elem == "" {
		return ""
	}
	if a, err := mail.ParseAddress(elem); err == nil {
		return a.Address
	}
	if l := strings.LastIndexByte(elem, '<'); l >= 0 {
		if r := strings.IndexByte(elem[l:], '>'); r > 0 {
			return strings.TrimSpace(elem[l+1 : l+r])
		}
		return ""
	}
	// A bare local name such as "root", or an address net/mail dislikes:
	// take it if it is one word.
	if strings.ContainsAny(elem, " \t\"") {
		return ""
	}
	return elem
}
