// Package hdrscan is relayd's one scanner of the RFC 5322 header section,
// shared by every part that reads a header: the sendmail command, cleanup
// (the daemon's intake), the signer's field counting and dsn. When two
// readers disagree on where the header ends, one of them takes header
// fields for body text (or the reverse), so they must share one rule.
//
// The rule, line by line (RFC 5322 §2.2, §2.2.3, §4.5.3):
//   - an empty line ends the header section (it belongs to neither);
//   - a line starting with SP or HTAB continues the field before it;
//   - a field starts with a name of printable ASCII other than ':'
//     (33-126), then optional SP/HTAB (the obsolete "Subject : hi" form
//     that receivers accept, §4.5.3), then ':';
//   - any other line is not header: the body started without its empty
//     line (a common script mistake), and the line belongs to the body.
//
// A continuation line before any field is not header either. Lines are
// given with their line ending (CRLF or LF), or without one at the end of
// input; the scanner never allocates.
package hdrscan

// Kind is what a line is in a header section.
type Kind int

const (
	// Body: not a header line; the body starts here.
	Body Kind = iota
	// Blank: the empty line that ends the header section.
	Blank
	// Field: the first line of a header field.
	Field
	// Continuation: a folded line of the field before it.
	Continuation
)

// Classify says what line is, given whether a field came before it in the
// same header section (a continuation needs one). For a Field, name is the
// field name as written, without the optional whitespace before ':'.
func Classify(line []byte, afterField bool) (kind Kind, name []byte) {
	switch {
	case len(line) == 0 || line[0] == '\n' || (line[0] == '\r' && len(line) > 1 && line[1] == '\n'):
		if len(line) == 0 {
			return Body, nil // no line at all
		}
		return Blank, nil
	case line[0] == ' ' || line[0] == '\t':
		if afterField {
			return Continuation, nil
		}
		return Body, nil
	}
	name, ok := FieldName(line)
	if !ok {
		return Body, nil
	}
	return Field, name
}

// FieldName returns the name of the field that line starts, or false when
// line does not start one.
func FieldName(line []byte) ([]byte, bool) {
	end := -1
	for i, c := range line {
		if c == ':' {
			end = i
			break
		}
		if c < 33 || c > 126 {
			// Only SP/HTAB, and only between the name and ':'.
			if c != ' ' && c != '\t' || i == 0 {
				return nil, false
			}
			j := i
			for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
				j++
			}
			if j == len(line) || line[j] != ':' {
				return nil, false
			}
			return line[:i], true
		}
	}
	if end <= 0 {
		return nil, false
	}
	return line[:end], true
}

// Value returns the field's value as written: everything after the ':' of
// raw (a whole field, continuation lines included). raw must start a field.
func Value(raw []byte) []byte {
	for i, c := range raw {
		if c == ':' {
			return raw[i+1:]
		}
	}
	return nil
}

// Lower reports whether name equals lower (a lower-case ASCII name) without
// regard to case.
func Lower(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Fields calls fn for each field of the header section at the start of b,
// in order, with its name and its raw bytes (all its lines with their
// endings), until fn returns false. It returns the offset where the body
// starts: after the empty line, at the first line that is not header, or
// len(b) when b is all header.
func Fields(b []byte, fn func(name, raw []byte) bool) int {
	off := 0
	start, stop := -1, false
	var name []byte
	flush := func(end int) {
		if start >= 0 && !stop {
			stop = !fn(name, b[start:end])
		}
		start = -1
	}
	for off < len(b) {
		line := b[off:]
		for i, c := range line {
			if c == '\n' {
				line = line[:i+1]
				break
			}
		}
		kind, n := Classify(line, start >= 0)
		switch kind {
		case Blank:
			flush(off)
			return off + len(line)
		case Body:
			flush(off)
			return off
		case Field:
			flush(off)
			start, name = off, n
		}
		off += len(line)
	}
	flush(off)
	return off
}

// Canonical returns the first line of a field without the obsolete
// whitespace between name and ':' ("Subject : hi" becomes "Subject: hi"):
// RFC 5322 §4.5 says the obsolete forms must be accepted but not
// generated, and some verifiers (dkimpy) refuse them. A line already in
// the modern form is returned as it is, without copying.
func Canonical(line []byte) []byte {
	name, ok := FieldName(line)
	if !ok || line[len(name)] == ':' {
		return line
	}
	v := Value(line)
	out := make([]byte, 0, len(name)+1+len(v))
	out = append(out, name...)
	out = append(out, ':')
	return append(out, v...)
}
