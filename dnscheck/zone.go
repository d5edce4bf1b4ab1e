package dnscheck

import (
	"strings"
)

// maxCharString is the longest character-string a TXT record can hold
// (RFC 1035 §3.3); longer values are split into several strings, which
// readers join (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
const maxCharString = 255

// txtRecord renders a TXT record in zone-file form. Each part starts a new
// character-string, and parts longer than 255 octets are split; several
// strings are wrapped in parentheses so the record may span lines.
func txtRecord(name string, parts ...string) string {
	var strs []string
	for _, p := range parts {
		for len(p) > maxCharString {
			strs = append(strs, p[:maxCharString])
			p = p[maxCharString:]
		}
		if p != "" {
			strs = append(strs, p)
		}
	}
	var b strings.Builder
	b.WriteString(fqdn(name))
	b.WriteString(" IN TXT ")
	if len(strs) > 1 {
		b.WriteString("( ")
	}
	for i, s := range strs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteTXT(s))
	}
	if len(strs) > 1 {
		b.WriteString(" )")
	}
	return b.String()
}

// quoteTXT quotes a character-string, escaping '"' and '\' (RFC 1035 §5.1).
func quoteTXT(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// fqdn returns name with exactly one trailing dot, as zone files need.
func fqdn(name string) string {
	return strings.TrimSuffix(name, ".") + "."
}

// bare returns name lower-cased without a trailing dot.
func bare(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// parentDomain strips the leftmost label, returning "" when fewer than two
// labels would remain. This stands in for the Public Suffix List lookup of
// RFC 7489 §3.2 (organizational domain) and is wrong for names under
// multi-label suffixes such as co.uk.
func parentDomain(name string) string {
	_, rest, ok := strings.Cut(bare(name), ".")
	if !ok || !strings.Contains(rest, ".") {
		return ""
	}
	return rest
}

// tagList parses a DKIM/DMARC tag=value list (RFC 6376 §3.2, RFC 7489 §6.4).
// Names keep their order; values have folding whitespace trimmed.
type tag struct{ name, value string }

func parseTags(s string) ([]tag, error) {
	var out []tag
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, &tagError{part: part, why: "is not tag=value"}
		}
		name = strings.TrimSpace(name)
		if seen[name] {
			return nil, &tagError{part: part, why: "repeats tag " + name}
		}
		seen[name] = true
		out = append(out, tag{name, strings.TrimSpace(value)})
	}
	return out, nil
}

type tagError struct{ part, why string }

func (e *tagError) Error() string { return "\"" + e.part + "\" " + e.why }

func tagValue(tags []tag, name string) (string, bool) {
	for _, t := range tags {
		if t.name == name {
			return t.value, true
		}
	}
	return "", false
}
