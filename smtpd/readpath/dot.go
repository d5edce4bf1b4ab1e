package readpath

import "bytes"

// dotState is the state of DATA content decoding (RFC 5321 §4.5.2: a
// leading '.' of a line is removed; a line "." ends the content). The
// states and transitions are those of go-smtp's DATA reader, byte for byte,
// so that both paths of fast.go decode any input, however malformed,
// identically; see step.
type dotState uint8

const (
	stBOL   dotState = iota // at the beginning of a line (where DATA starts)
	stDot                   // after a '.' at the beginning of a line (removed)
	stDotCR                 // after ".\r" at the beginning of a line (both removed)
	stCR                    // after a CR
	stData                  // inside a line
	stEOF                   // after ".\r\n" at the beginning of a line: the end
)

// step is the transition on byte c from s, and whether c is content. Note
// go-smtp's quirks, kept on purpose: "\r\r\n" does not start a line (CR
// followed by anything but LF is stData, even another CR), and ".\r"
// followed by anything but LF drops both.
func step(s dotState, c byte) (dotState, bool) {
	switch s {
	case stBOL:
		switch c {
		case '.':
			return stDot, false
		case '\r':
			return stCR, true
		}
		return stData, true
	case stDot:
		if c == '\r' {
			return stDotCR, false
		}
		return stData, true
	case stDotCR:
		if c == '\n' {
			return stEOF, false
		}
		return stData, true
	case stCR:
		if c == '\n' {
			return stBOL, true
		}
		return stData, true
	case stData:
		if c == '\r' {
			return stCR, true
		}
		return stData, true
	}
	return stEOF, false
}

// ordinary reports whether c takes every state to stData: any byte but
// CR, LF and '.'. The state after a stream therefore depends only on what
// follows its last ordinary byte.
func ordinary(c byte) bool { return c != '\r' && c != '\n' && c != '.' }

// endOf returns the bytes that take go-smtp's DATA reader from s to stEOF
// without content: what the hand-over feeds it so that its drain stops
// exactly at the end (see fast.go).
func endOf(s dotState) []byte {
	switch s {
	case stBOL:
		return []byte(".\r\n")
	case stDot:
		return []byte("\r\n")
	case stDotCR:
		return []byte("\n")
	case stCR:
		return []byte("\n.\r\n")
	case stData:
		return []byte("\r\n.\r\n")
	}
	return nil
}

// dotDecoder decodes DATA content a run at a time: inside a line it copies
// up to the next CR with one vectorised search, instead of go-smtp's byte
// at a time. It also counts line lengths the way go-smtp's line limit
// does.
type dotDecoder struct {
	st      dotState
	lineLen int // go-smtp's count: bytes since the last LF, plus one
	limit   int // the server's MaxLineLength; <= 0: none
}

// decode decodes from src into dst. It stops when dst is full, src is used
// up or the end is reached (d.st == stEOF), and returns the bytes written
// and consumed.
func (d *dotDecoder) decode(dst, src []byte) (nw, nr int) {
	for nr < len(src) && nw < len(dst) && d.st != stEOF {
		if d.st == stData {
			run := src[nr:]
			if room := len(dst) - nw; len(run) > room {
				run = run[:room]
			}
			if i := bytes.IndexByte(run, '\r'); i >= 0 {
				run = run[:i+1]
				d.st = stCR
			}
			nw += copy(dst[nw:], run)
			nr += len(run)
			continue
		}
		c := src[nr]
		nr++
		var content bool
		if d.st, content = step(d.st, c); content {
			dst[nw] = c
			nw++
		}
	}
	return nw, nr
}

// lines accounts for raw bytes b and reports false once a line is longer
// than the limit, as go-smtp's lineLimitReader would (for each byte: reset
// on LF, then count; too long above the limit).
func (d *dotDecoder) lines(b []byte) bool {
	if d.limit <= 0 {
		return true
	}
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			d.lineLen += len(b)
			return d.lineLen <= d.limit
		}
		if d.lineLen+i > d.limit {
			return false
		}
		d.lineLen = 1
		b = b[i+1:]
	}
}
