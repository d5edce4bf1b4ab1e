// Package reencode repairs messages whose lines are too long for SMTP: RFC
// 5322 §2.1.1 and RFC 5321 §4.5.3.1.6 allow at most 998 octets per line,
// and smarthosts that enforce it (Exim's message_linelength_limit, many
// ISPs) refuse the whole message. Apps send such lines all the time
// (minified HTML, JSON, base64 without breaks); Postfix accepts them.
//
// Fix re-encodes only the MIME leaf parts (RFC 2045, RFC 2046) that have an
// over-long line, so that what the recipient sees after decoding is
// identical:
//   - a part with no, 7bit, 8bit or binary Content-Transfer-Encoding (text,
//     or any other type) becomes quoted-printable, with soft line breaks
//     (RFC 2045 §6.7): its hard line breaks stay line breaks, so decoding
//     gives back the same lines (base64 would turn them into data);
//   - a base64 part is re-wrapped to 76 columns (RFC 2045 §6.8).
//
// The part's Content-Transfer-Encoding field is replaced (or added, with
// MIME-Version for a message that had none); every other byte of the
// message is copied as it was. A part that cannot be re-encoded without
// changing its content (already quoted-printable, a message/* part, an
// unknown encoding: a broken message) fails with ErrUnfixable.
//
// The message is read twice from an io.ReaderAt (the spooled copy): once to
// find the parts and their lines, once to write. Memory is bounded by a
// fixed read buffer and one part header, whatever the line lengths.
package reencode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"relayd/internal/hdrscan"
)

// MaxLine is the longest line SMTP allows, without its CRLF.
const MaxLine = 998

// maxPartHeader bounds one part's header block.
const maxPartHeader = 1 << 20

// ErrUnfixable: an over-long line is in a part whose encoding cannot be
// changed without changing its content.
var ErrUnfixable = errors.New("reencode: an over-long line cannot be re-encoded")

// leaf is one MIME leaf part, by offsets into the message.
type leaf struct {
	hdrStart, hdrEnd   int64 // its header fields (hdrEnd: where the empty line starts)
	bodyStart, bodyEnd int64 // its content, without the CRLF before a delimiter
	long               bool
	eight              bool   // an octet above 127 in the content
	cte                string // lower case, "" when absent
	fixable            bool   // the body type allows a new encoding
	top                bool   // the message's own header
	hasMIME            bool   // top: MIME-Version present
}

// lines reads a message as pieces of lines with their offsets.
type lines struct {
	br      *bufio.Reader
	off     int64 // offset of the next byte
	pending []byte
	pendOff int64
	start   bool // the pending piece starts a line
	midLine bool
}

func newLines(r io.Reader) *lines { return &lines{br: bufio.NewReaderSize(r, 64<<10)} }

// next returns the next piece: at most the buffer size, ending in LF when
// it ends a line. start reports whether it starts a line. io.EOF at the end.
func (l *lines) next() (piece []byte, off int64, start bool, err error) {
	if l.pending != nil {
		p := l.pending
		l.pending = nil
		return p, l.pendOff, l.start, nil
	}
	b, err := l.br.ReadSlice('\n')
	start = !l.midLine
	off = l.off
	l.off += int64(len(b))
	switch {
	case err == nil:
		l.midLine = false
	case errors.Is(err, bufio.ErrBufferFull):
		l.midLine = true
		err = nil
	case errors.Is(err, io.EOF):
		if len(b) == 0 {
			return nil, off, start, io.EOF
		}
		l.midLine, err = false, nil
	default:
		return nil, off, start, err
	}
	return b, off, start, err
}

// unread pushes a piece back (a copy: the buffer moves on).
func (l *lines) unread(piece []byte, off int64, start bool) {
	l.pending, l.pendOff, l.start = bytes.Clone(piece), off, start
}

// scanner finds the leaves of a message.
type scanner struct {
	l      *lines
	leaves []leaf
	// curLen is the length of the line in progress (pieces of one line).
	curLen int
}

// scan walks the whole message.
func scan(r io.Reader) ([]leaf, error) {
	s := &scanner{l: newLines(r)}
	if _, err := s.entity(nil, true); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return s.leaves, nil
}

// delimiter reports whether a line that starts with piece is a delimiter of
// one of the enclosing boundaries (innermost last), and whether it closes.
func delimiter(piece []byte, bounds []string) (idx int, closing, ok bool) {
	if !bytes.HasPrefix(piece, []byte("--")) {
		return 0, false, false
	}
	for i := len(bounds) - 1; i >= 0; i-- {
		rest, found := bytes.CutPrefix(piece[2:], []byte(bounds[i]))
		if !found {
			continue
		}
		closing = bytes.HasPrefix(rest, []byte("--"))
		if closing {
			rest = rest[2:]
		}
		// Only linear white space may follow (RFC 2046 §5.1.1).
		if len(bytes.Trim(rest, " \t\r\n")) == 0 {
			return i, closing, true
		}
	}
	return 0, false, false
}

// entity reads one entity (the message, or a part) up to the delimiter of
// an enclosing boundary or the end. It returns which boundary ended it
// (-1: the end of input) and leaves that delimiter line unread.
func (s *scanner) entity(bounds []string, top bool) (ended int, err error) {
	lf := leaf{top: top}
	var hdr []byte
	lf.hdrStart = -1
	for {
		piece, off, start, err := s.l.next()
		if err != nil {
			return -1, err
		}
		if lf.hdrStart < 0 {
			lf.hdrStart = off
		}
		if start {
			if _, _, ok := delimiter(piece, bounds); ok { // a part without an empty line
				s.l.unread(piece, off, start)
				return s.ended(bounds)
			}
			if k, _ := hdrscan.Classify(piece, len(hdr) > 0); k == hdrscan.Blank {
				lf.hdrEnd, lf.bodyStart = off, off+int64(len(piece))
				break
			} else if k == hdrscan.Body && start {
				// The body starts without an empty line: no fields.
				s.l.unread(piece, off, start)
				lf.hdrEnd, lf.bodyStart = off, off
				break
			}
		}
		if len(hdr)+len(piece) > maxPartHeader {
			return -1, fmt.Errorf("%w: a part header is over %d bytes", ErrUnfixable, maxPartHeader)
		}
		hdr = append(hdr, piece...)
	}
	ctype, boundary := "text/plain", ""
	hdrscan.Fields(hdr, func(name, raw []byte) bool {
		v := strings.TrimSpace(strings.ReplaceAll(string(hdrscan.Value(raw)), "\r\n", ""))
		switch {
		case hdrscan.Lower(name, "content-type"):
			if mt, params, err := mime.ParseMediaType(v); err == nil {
				ctype, boundary = mt, params["boundary"]
			} else if mt, _, _ := strings.Cut(v, ";"); mt != "" {
				ctype = strings.ToLower(strings.TrimSpace(mt))
			}
		case hdrscan.Lower(name, "content-transfer-encoding"):
			lf.cte = strings.ToLower(v)
		case hdrscan.Lower(name, "mime-version"):
			lf.hasMIME = true
		}
		return true
	})
	if strings.HasPrefix(ctype, "multipart/") && boundary != "" {
		return s.multipart(append(bounds[:len(bounds):len(bounds)], boundary), lf)
	}
	lf.fixable = !strings.HasPrefix(ctype, "message/") && !strings.HasPrefix(ctype, "multipart/")
	return s.leafBody(bounds, lf)
}

// leafBody reads a leaf's content up to a delimiter or the end.
func (s *scanner) leafBody(bounds []string, lf leaf) (int, error) {
	s.curLen = 0
	for {
		piece, off, start, err := s.l.next()
		if errors.Is(err, io.EOF) {
			lf.bodyEnd = s.l.off
			s.leaves = append(s.leaves, lf)
			return -1, io.EOF
		}
		if err != nil {
			return -1, err
		}
		if start {
			if _, _, ok := delimiter(piece, bounds); ok {
				// The CRLF before the delimiter belongs to it (RFC 2046
				// §5.1.1).
				lf.bodyEnd = max(lf.bodyStart, off-2)
				s.leaves = append(s.leaves, lf)
				s.l.unread(piece, off, start)
				return s.ended(bounds)
			}
			s.curLen = 0
		}
		n := len(piece)
		if bytes.HasSuffix(piece, []byte("\r\n")) {
			n -= 2
		} else if bytes.HasSuffix(piece, []byte("\n")) {
			n--
		}
		if s.curLen += n; s.curLen > MaxLine {
			lf.long = true
		}
		if !lf.eight {
			for _, c := range piece {
				if c >= 0x80 {
					lf.eight = true
					break
				}
			}
		}
	}
}

// ended reads the delimiter line left unread and says which boundary it is.
func (s *scanner) ended(bounds []string) (int, error) {
	piece, off, start, err := s.l.next()
	if err != nil {
		return -1, err
	}
	i, _, _ := delimiter(piece, bounds)
	s.l.unread(piece, off, start)
	return i, nil
}

// multipart reads the preamble, the parts and the epilogue of a multipart
// entity whose own boundary is the last of bounds.
func (s *scanner) multipart(bounds []string, lf leaf) (int, error) {
	own := len(bounds) - 1
	// The preamble, up to the first delimiter: skipped.
	for {
		piece, off, start, err := s.l.next()
		if err != nil {
			return -1, err
		}
		if !start {
			continue
		}
		if i, closing, ok := delimiter(piece, bounds); ok {
			if i != own {
				s.l.unread(piece, off, start)
				return i, nil
			}
			if closing {
				return s.epilogue(bounds[:own])
			}
			break
		}
	}
	for {
		ended, err := s.entity(bounds, false)
		if err != nil {
			return -1, err
		}
		if ended != own {
			return ended, nil // an outer delimiter ends this multipart too
		}
		piece, _, _, err := s.l.next() // the delimiter line
		if err != nil {
			return -1, err
		}
		if _, closing, _ := delimiter(piece, bounds); closing {
			return s.epilogue(bounds[:own])
		}
	}
}

// epilogue skips to an outer delimiter or the end.
func (s *scanner) epilogue(bounds []string) (int, error) {
	for {
		piece, off, start, err := s.l.next()
		if err != nil {
			return -1, err
		}
		if start {
			if _, _, ok := delimiter(piece, bounds); ok {
				s.l.unread(piece, off, start)
				return s.ended(bounds)
			}
		}
	}
}
