package cleanup

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// copyBody streams the body from br to w with line endings normalised:
// bare LF becomes CRLF; a bare CR or a NUL is an error. The output always
// ends with CRLF (or is empty). It returns the number of bytes written;
// it stops with ErrTooBig once more than limit bytes would be written.
func copyBody(w io.Writer, br *bufio.Reader, limit int64) (int64, error) {
	buf := getOut()
	defer putOut(buf)
	var (
		n      int64
		out    = *buf
		lastLF = true // at start of a line
		cr     bool   // previous chunk ended in CR
	)
	defer func() { *buf = out }() // keep what append grew, for the pool
	flush := func() error {
		if n += int64(len(out)); n > limit {
			return ErrTooBig
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		out = out[:0]
		return nil
	}
	for {
		chunk, rerr := br.Peek(br.Buffered())
		hasNUL := bytes.IndexByte(chunk, 0) >= 0
		if len(chunk) == 0 {
			if _, err := br.Peek(1); err != nil {
				rerr = err
			} else {
				continue
			}
		}
		for len(chunk) > 0 {
			if cr {
				if chunk[0] != '\n' {
					return n, ErrBareCR
				}
				out = append(out, '\r', '\n')
				chunk, cr, lastLF = chunk[1:], false, true
				continue
			}
			var i int
			if hasNUL {
				i = bytes.IndexAny(chunk, "\r\n\x00")
			} else {
				i = indexCRLF(chunk)
			}
			if i < 0 {
				out = append(out, chunk...)
				lastLF = false
				break
			}
			out = append(out, chunk[:i]...)
			switch chunk[i] {
			case 0:
				return n, ErrNUL
			case '\n':
				out = append(out, '\r', '\n')
				lastLF = true
			case '\r':
				cr = true
			}
			if i > 0 && chunk[i] != '\n' {
				lastLF = false
			}
			chunk = chunk[i+1:]
		}
		if _, err := br.Discard(br.Buffered()); err != nil {
			return n, err
		}
		if len(out) >= 32<<10 {
			if err := flush(); err != nil {
				return n, err
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return n, rerr
			}
			break
		}
	}
	if cr {
		return n, ErrBareCR
	}
	if !lastLF {
		out = append(out, '\r', '\n')
	}
	return n, flush()
}

// indexCRLF returns the index of the first CR or LF in b, or -1: two
// vectorised bytes.IndexByte scans per line, not bytes.IndexAny, which
// tests one byte at a time (bench/README.md, "Costs behind the code").
func indexCRLF(b []byte) int {
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		end = len(b)
	}
	if i := bytes.IndexByte(b[:end], '\r'); i >= 0 {
		return i
	}
	if end == len(b) {
		return -1
	}
	return end
}
