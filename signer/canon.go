package signer

import (
	"hash"
	"strings"
)

// relaxedBody is the "relaxed" body canonicalisation of RFC 6376 §3.4.4,
// streaming into a hash:
//   - whitespace at the end of a line is removed;
//   - every other run of SP/HTAB becomes a single SP;
//   - empty lines at the end of the body are removed;
//   - a non-empty body always ends with CRLF; an empty one hashes as "".
//
// Line breaks are held back (pendingEOL) until a later non-empty line proves
// they are not trailing; whitespace is held back (pendingWSP) until a later
// character proves it is not at the end of a line. Memory is O(1) in the size
// of the body apart from one scratch buffer the size of the largest Write.
type relaxedBody struct {
	h          hash.Hash
	pendingEOL int  // line breaks not yet emitted
	pendingWSP bool // a run of SP/HTAB not yet emitted
	pendingCR  bool // last byte was CR, waiting for LF
	wrote      bool // anything other than line breaks was seen
	out        []byte
}

func newRelaxedBody(h hash.Hash) *relaxedBody { return &relaxedBody{h: h} }

var crlfs = []byte(strings.Repeat("\r\n", 64))

func (c *relaxedBody) emitEOLs() {
	for c.pendingEOL > 0 {
		n := min(c.pendingEOL, len(crlfs)/2)
		c.out = append(c.out, crlfs[:2*n]...)
		c.pendingEOL -= n
		if len(c.out) >= 32<<10 {
			c.flush()
		}
	}
}

// literal emits one ordinary byte with what is pending before it.
func (c *relaxedBody) literal(b byte) {
	if c.pendingEOL > 0 {
		c.emitEOLs()
	}
	if c.pendingWSP {
		c.out = append(c.out, ' ')
		c.pendingWSP = false
	}
	c.out = append(c.out, b)
	c.wrote = true
}

func (c *relaxedBody) flush() {
	if len(c.out) > 0 {
		c.h.Write(c.out) // hash.Hash.Write never fails
		c.out = c.out[:0]
	}
}

// Write never fails.
func (c *relaxedBody) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		if c.pendingCR {
			c.pendingCR = false
			if b == '\n' {
				c.pendingWSP = false // §3.4.4: drop whitespace at line end
				c.pendingEOL++
				continue
			}
			c.literal('\r') // a bare CR is an ordinary character
		}
		switch b {
		case ' ', '\t':
			c.pendingWSP = true
		case '\r':
			c.pendingCR = true
		default:
			// Fast path: copy a run of ordinary bytes at once.
			c.literal(b)
			j := i + 1
			for j < len(p) && p[j] != ' ' && p[j] != '\t' && p[j] != '\r' {
				j++
			}
			if j > i+1 {
				c.flush()
				c.h.Write(p[i+1 : j])
			}
			i = j - 1
		}
		if len(c.out) >= 32<<10 {
			c.flush()
		}
	}
	c.flush()
	return len(p), nil
}

// Sum finishes the body and returns its hash.
func (c *relaxedBody) Sum() []byte {
	if c.pendingCR {
		c.pendingCR = false
		c.literal('\r')
	}
	if c.wrote {
		// The last line's break (or the CRLF a body without one needs);
		// everything after it was empty lines, which are dropped.
		c.out = append(c.out, '\r', '\n')
	}
	c.flush()
	return c.h.Sum(nil)
}

// relaxedHeader is the "relaxed" header canonicalisation of RFC 6376 §3.4.2
// for one field (name, colon, value, with or without its final CRLF): name in
// lower case, value unfolded, runs of SP/HTAB reduced to one SP, whitespace
// around the colon and at the end removed. The result ends with CRLF.
func relaxedHeader(field string) string {
	name, value, _ := strings.Cut(field, ":")
	var b strings.Builder
	b.Grow(len(field) + 2)
	b.WriteString(strings.ToLower(strings.TrimRight(name, " \t")))
	b.WriteByte(':')
	wsp := false
	started := false
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\r', '\n':
			// Unfolding removes the CRLF; the WSP after it stays (and is
			// then collapsed).
		case ' ', '\t':
			wsp = true
		default:
			if wsp && started {
				b.WriteByte(' ')
			}
			wsp = false
			started = true
			b.WriteByte(c)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}
