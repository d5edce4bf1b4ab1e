package reencode

import (
	"bytes"
	"fmt"
	"io"
	"mime/quotedprintable"

	"relayd/internal/hdrscan"
)

// Fix writes the message in r (size bytes, CRLF line endings) to w with
// every leaf part that has a line over MaxLine octets re-encoded (see the
// package doc). It returns how many parts it re-encoded; 0 means w got the
// message unchanged. On ErrUnfixable nothing has been written.
func Fix(w io.Writer, r io.ReaderAt, size int64) (int, error) {
	return FixWith(w, r, size, Options{})
}

// Options adds repairs to Fix.
type Options struct {
	// SevenBit also re-encodes, as quoted-printable, the parts that have
	// 8-bit octets and no, 7bit, 8bit or binary encoding: the downgrade RFC
	// 6152 §3 asks for before relaying to a server without 8BITMIME.
	// 8-bit octets in header fields are left alone.
	SevenBit bool
}

// FixWith is Fix with more repairs.
func FixWith(w io.Writer, r io.ReaderAt, size int64, o Options) (int, error) {
	leaves, err := scan(io.NewSectionReader(r, 0, size))
	if err != nil {
		return 0, err
	}
	var todo []leaf
	for _, lf := range leaves {
		if !lf.long {
			if o.SevenBit && lf.eight && lf.fixable && encodingOf(lf) == "quoted-printable" {
				todo = append(todo, lf)
			}
			continue
		}
		if !lf.fixable || encodingOf(lf) == "" {
			what := lf.cte
			if what == "" {
				what = "no"
			}
			return 0, fmt.Errorf("%w: a line over %d octets in a part with %s encoding", ErrUnfixable, MaxLine, what)
		}
		todo = append(todo, lf)
	}
	var cur int64
	for _, lf := range todo {
		if err := copyRange(w, r, cur, lf.hdrStart); err != nil {
			return 0, err
		}
		if err := writeHeader(w, r, lf); err != nil {
			return 0, err
		}
		// The empty line after the header.
		if err := copyRange(w, r, lf.hdrEnd, lf.bodyStart); err != nil {
			return 0, err
		}
		if lf.bodyStart == lf.hdrEnd { // there was none
			if _, err := io.WriteString(w, "\r\n"); err != nil {
				return 0, err
			}
		}
		if err := encode(w, io.NewSectionReader(r, lf.bodyStart, lf.bodyEnd-lf.bodyStart), encodingOf(lf), lf.bodyEnd == size); err != nil {
			return 0, err
		}
		cur = lf.bodyEnd
	}
	if err := copyRange(w, r, cur, size); err != nil {
		return 0, err
	}
	return len(todo), nil
}

// encodingOf is the encoding a long leaf gets, "" when none may be given.
func encodingOf(lf leaf) string {
	switch lf.cte {
	case "", "7bit", "8bit", "binary":
		// Quoted-printable for any type: its hard line breaks keep the
		// lines as they were, so a decoder gives back the same lines
		// (base64 would turn the CRLFs of a 7bit part into data).
		return "quoted-printable"
	case "base64":
		return "rewrap"
	}
	return ""
}

func copyRange(w io.Writer, r io.ReaderAt, from, to int64) error {
	if to <= from {
		return nil
	}
	_, err := io.Copy(w, io.NewSectionReader(r, from, to-from))
	return err
}

// writeHeader writes lf's header fields with Content-Transfer-Encoding set
// to the new encoding (replaced where it was, else added last), and
// MIME-Version added to a message header that had none.
func writeHeader(w io.Writer, r io.ReaderAt, lf leaf) error {
	hdr := make([]byte, lf.hdrEnd-lf.hdrStart)
	if _, err := r.ReadAt(hdr, lf.hdrStart); err != nil && err != io.EOF {
		return err
	}
	cte := "base64"
	if encodingOf(lf) == "quoted-printable" {
		cte = "quoted-printable"
	}
	field := "Content-Transfer-Encoding: " + cte + "\r\n"
	var b bytes.Buffer
	replaced := false
	hdrscan.Fields(hdr, func(name, raw []byte) bool {
		if hdrscan.Lower(name, "content-transfer-encoding") {
			if !replaced {
				b.WriteString(field)
			}
			replaced = true
			return true
		}
		b.Write(raw)
		return true
	})
	if lf.top && !lf.hasMIME {
		b.WriteString("MIME-Version: 1.0\r\n")
	}
	if !replaced {
		b.WriteString(field)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// encode writes the content in r in the new encoding; final: the content
// ends the message, so the output ends with CRLF (else the CRLF before
// the next delimiter follows).
func encode(w io.Writer, r io.Reader, enc string, final bool) error {
	switch enc {
	case "quoted-printable":
		// Text mode: CRLF stays a hard line break; other lines get soft
		// breaks at 76 columns (RFC 2045 §6.7).
		qp := quotedprintable.NewWriter(w)
		if _, err := io.Copy(qp, r); err != nil {
			return err
		}
		if err := qp.Close(); err != nil {
			return err
		}
		// A content ending in CRLF was written ending in CRLF; one that
		// does not (before a delimiter) needs nothing more.
		return nil
	case "rewrap":
		lw := &lineWrap{w: w}
		if _, err := io.Copy(&stripSpace{w: lw}, r); err != nil {
			return err
		}
		return lw.end(final)
	}
	return fmt.Errorf("reencode: unknown encoding %q", enc)
}

// lineWrap breaks what is written into lines of 76 characters (RFC 2045
// §6.8), CRLF between them.
type lineWrap struct {
	w   io.Writer
	col int
	buf []byte
}

func (l *lineWrap) Write(p []byte) (int, error) {
	n := len(p)
	l.buf = l.buf[:0]
	for len(p) > 0 {
		if l.col == 76 {
			l.buf = append(l.buf, '\r', '\n')
			l.col = 0
		}
		k := min(76-l.col, len(p))
		l.buf = append(l.buf, p[:k]...)
		l.col += k
		p = p[k:]
	}
	_, err := l.w.Write(l.buf)
	return n, err
}

// end finishes the last line: with CRLF when the content ends the message.
func (l *lineWrap) end(final bool) error {
	if final && l.col > 0 {
		_, err := io.WriteString(l.w, "\r\n")
		return err
	}
	return nil
}

// stripSpace drops the line breaks and white space of a base64 body, which
// decoders ignore (RFC 2045 §6.8).
type stripSpace struct {
	w   io.Writer
	buf []byte
}

func (s *stripSpace) Write(p []byte) (int, error) {
	s.buf = s.buf[:0]
	for _, c := range p {
		if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
			s.buf = append(s.buf, c)
		}
	}
	_, err := s.w.Write(s.buf)
	return len(p), err
}
