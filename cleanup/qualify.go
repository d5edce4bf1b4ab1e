package cleanup

import (
	"bytes"
	"strings"
)

// addressFields are the header fields whose value is an address list
// (RFC 5322 §3.6.2, §3.6.3, §3.6.6). Bcc is removed anyway.
var addressFields = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true,
	"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true,
}

// qualifyHeader appends "@" + hostname to every address without a domain in
// the address fields ("To: root", "Cc: cron, Admin <admin>"): RFC 5322
// §3.4.1 requires a domain, receivers score an unqualified To as malformed,
// and Postfix's append_at_myorigin does the same. Only the bytes "@host" are
// inserted; the rest of each field (display names, comments, folding) stays
// as it was. A field that cannot be scanned is left alone.
func (c *Config) qualifyHeader(h *header) {
	if c.Hostname == "" {
		return
	}
	for i := range h.fields {
		f := &h.fields[i]
		if !addressFields[f.name] {
			continue
		}
		if raw, ok := qualifyField(f.raw, f.valueAt(), "@"+c.Hostname); ok {
			f.raw = raw
		}
	}
}

// qualifyField scans raw[start:] (an address list, possibly folded) and
// returns it with at inserted after each addr-spec that has no '@'. ok is
// false when nothing changed or the value does not scan (unbalanced quotes,
// comments or angle brackets).
func qualifyField(raw []byte, start int, at string) ([]byte, bool) {
	var inserts []int
	var (
		inAngle  bool
		angleTok int // end of the last token inside <>, -1 none
		angleAt  bool
		// the current mailbox outside <>: how many words (atoms, dot-atoms,
		// quoted strings), where the last ends, whether '@' was seen
		words    int
		lastEnd  int
		bareAt   bool
		hadAngle bool
		bad      bool
	)
	reset := func() {
		words, lastEnd, bareAt, hadAngle = 0, 0, false, false
	}
	finish := func() {
		// A bare addr-spec is one word ("root", "a.b", a quoted string);
		// several words without <> are not an address: leave them.
		if !hadAngle && words == 1 && !bareAt {
			inserts = append(inserts, lastEnd)
		}
		reset()
	}
	v := raw[:len(raw)-2] // without the final CRLF
	i := start
	for i < len(v) && !bad {
		ch := v[i]
		switch {
		case ch == '"':
			j := skipQuoted(v, i)
			if j < 0 {
				return nil, false
			}
			if inAngle {
				angleTok = j
			} else if !hadAngle {
				words, lastEnd = words+1, j
			}
			i = j
			continue
		case ch == '(':
			j := skipComment(v, i)
			if j < 0 {
				return nil, false
			}
			i = j
			continue
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n':
			i++
			continue
		}
		if inAngle {
			switch ch {
			case '>':
				if angleTok >= 0 && !angleAt {
					inserts = append(inserts, angleTok)
				}
				inAngle, hadAngle = false, true
			case ':': // the end of a source route: the addr-spec follows
				angleTok, angleAt = -1, false
			case '@':
				angleAt = true
				angleTok = i + 1
			case '<':
				bad = true
			default:
				angleTok = i + 1
			}
			i++
			continue
		}
		switch ch {
		case '<':
			if hadAngle {
				return nil, false
			}
			inAngle, angleTok, angleAt = true, -1, false
		case '>':
			return nil, false
		case ',':
			finish()
		case ':': // a group's display name ends (RFC 5322 §3.4)
			reset()
		case ';': // the group ends
			finish()
		case '@':
			bareAt = true
		default:
			// an atom or dot-atom run
			j := i
			for j < len(v) && !strings.ContainsRune("\"() \t\r\n<>,:;@", rune(v[j])) {
				j++
			}
			if j == i { // a stray ')'
				return nil, false
			}
			if !hadAngle {
				words, lastEnd = words+1, j
			}
			i = j
			continue
		}
		i++
	}
	if bad || inAngle {
		return nil, false
	}
	finish()
	if len(inserts) == 0 {
		return nil, false
	}
	var b bytes.Buffer
	prev := 0
	for _, at0 := range inserts {
		b.Write(raw[prev:at0])
		b.WriteString(at)
		prev = at0
	}
	b.Write(raw[prev:])
	return b.Bytes(), true
}

// skipQuoted returns the index after the quoted string starting at v[i],
// or -1 when it does not end.
func skipQuoted(v []byte, i int) int {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipComment returns the index after the (nested) comment starting at
// v[i], or -1 when it does not end (RFC 5322 §3.2.2).
func skipComment(v []byte, i int) int {
	depth := 0
	for j := i; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return j + 1
			}
		}
	}
	return -1
}
