package dsn

import (
	"bytes"
	"strings"

	"relayd/internal/reply"
)

const (
	foldWidth = 78  // RFC 5322 §2.1.1 SHOULD limit, excluding CRLF
	hardLimit = 998 // RFC 5322 §2.1.1 MUST limit, excluding CRLF
	// maxRun is the longest unbroken run written on one line; longer runs
	// are split (the unfolded value then shows a space inside the run).
	maxRun = 900
)

// writeField writes "name: value" CRLF, folding at spaces (RFC 5322
// §2.2.3) so lines stay near foldWidth and never exceed hardLimit. value
// must already be one line (see reply.OneLine).
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteByte(':')
	lineLen := len(name) + 1
	for i, word := range splitRuns(value) {
		if i > 0 && lineLen+1+len(word) > foldWidth {
			b.WriteString("\r\n")
			lineLen = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		lineLen += 1 + len(word)
	}
	b.WriteString("\r\n")
}

// splitRuns splits a one-line value at spaces and cuts any word longer than
// maxRun into pieces of at most maxRun bytes (at UTF-8 boundaries).
func splitRuns(s string) []string {
	var out []string
	for _, w := range strings.Split(s, " ") {
		if w == "" {
			continue
		}
		for len(w) > maxRun {
			cut := maxRun
			for cut > 0 && !utf8Start(w[cut]) {
				cut--
			}
			out = append(out, w[:cut])
			w = w[cut:]
		}
		out = append(out, w)
	}
	return out
}

func utf8Start(c byte) bool { return c&0xC0 != 0x80 }

// wrapText word-wraps one paragraph of prose to width, prefixing every line
// with indent, and returns the lines joined by "\n" (converted to CRLF when
// the part is written).
func wrapText(indent, s string, width int) string {
	var b strings.Builder
	lineLen := 0
	for _, word := range splitRuns(reply.OneLine(s)) {
		if lineLen > 0 && lineLen+1+len(word) > width {
			b.WriteByte('\n')
			lineLen = 0
		}
		if lineLen == 0 {
			b.WriteString(indent)
			lineLen = len(indent)
		} else {
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(word)
		lineLen += len(word)
	}
	return b.String()
}
