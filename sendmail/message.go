package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"relayd/internal/hdrscan"
	"relayd/internal/sysexits"
)

// MaxHeaderBytes bounds the header block kept in memory.
const MaxHeaderBytes = 1 << 20

// Message is an input message whose header block has been read and edited;
// the body is still unread.
type Message struct {
	// Header is the header block as it will be sent: CRLF line endings, Bcc
	// removed, From added when -F asked for it, ending with the empty line.
	Header []byte
	// Rcpts are the addresses found in To, Cc and Bcc (only with -t).
	Rcpts []string
	// HasFrom reports whether the input had a From header.
	HasFrom bool

	lr   *lineReader
	done bool // the input ended inside the header block
}

// Reader returns the whole message (header block then streamed body) with
// CRLF line endings. It can be used once.
func (m *Message) Reader() io.Reader {
	if m.done {
		return bytes.NewReader(m.Header)
	}
	return io.MultiReader(bytes.NewReader(m.Header), &bodyReader{lr: m.lr})
}

// ReadMessage reads the header block of the message on r, following the
// sendmail conventions in opts: without IgnoreDots a line consisting of a
// single "." ends the input; with ExtractRecipients the recipients are taken
// from To, Cc and Bcc. fromAddr is the address used when opts.FullName asks
// for a From header and the message has none. LF and CRLF input are both
// accepted; the output always uses CRLF. Errors are *ExitError.
func ReadMessage(r io.Reader, opts Options, fromAddr string) (*Message, error) {
	lr := &lineReader{br: bufio.NewReaderSize(r, 64<<10), dots: !opts.IgnoreDots}
	m := &Message{lr: lr}
	var fields [][]byte // each one complete field, folded lines included
	var hdrSize int
	first := true
	for {
		line, err := lr.line()
		if err != nil {
			return nil, exitf(sysexits.DataErr, err, "reading message")
		}
		if line == nil { // end of input
			m.done = true
			break
		}
		hdrSize += len(line)
		if hdrSize > MaxHeaderBytes {
			return nil, exitf(sysexits.DataErr, nil, "header too large (over %d bytes)", MaxHeaderBytes)
		}
		if first && bytes.HasPrefix(line, []byte("From ")) {
			// An mbox "From " separator line: not a header, dropped as
			// sendmail and Postfix do.
			first = false
			continue
		}
		first = false
		if !lr.started && len(fields) > 0 { // the rest of a long line
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
			continue
		}
		// One rule with the daemon's intake (internal/hdrscan): the
		// obsolete "Subject : hi" is a field, not the start of the body.
		kind, _ := hdrscan.Classify(line, len(fields) > 0)
		if kind == hdrscan.Blank {
			break
		}
		if kind == hdrscan.Continuation {
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
			continue
		}
		if kind == hdrscan.Body {
			// The body starts without an empty line: push the line back
			// so that the body begins with it, after our empty line.
			lr.unread(line)
			break
		}
		fields = append(fields, line)
	}

	var hdr bytes.Buffer
	for _, f := range fields {
		n, _ := hdrscan.FieldName(f)
		name := strings.ToLower(string(n))
		switch name {
		case "to", "cc", "bcc":
			if opts.ExtractRecipients {
				m.Rcpts = append(m.Rcpts, parseAddrList(fieldValue(f))...)
			}
		case "from":
			m.HasFrom = true
		}
		if name == "bcc" {
			continue // RFC 5322 section 3.6.3: Bcc is not transmitted
		}
		hdr.Write(f)
	}
	if opts.FullName != "" && !m.HasFrom {
		fmt.Fprintf(&hdr, "From: %s <%s>\r\n", displayName(opts.FullName), fromAddr)
	}
	hdr.WriteString("\r\n")
	m.Header = hdr.Bytes()
	return m, nil
}

// displayName renders a -F name as an RFC 5322 phrase: as-is when it is
// plain atoms, quoted when it has specials, RFC 2047-encoded when not ASCII.
func displayName(n string) string {
	plain, ascii := true, true
	for _, r := range n {
		switch {
		case r >= 0x80:
			ascii = false
		case r < 0x20 || strings.ContainsRune(`()<>[]:;@\,."`, r):
			plain = false
		}
	}
	if !ascii {
		return mime.QEncoding.Encode("utf-8", n)
	}
	if plain {
		return n
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(n) + `"`
}

// fieldValue returns the unfolded value of a complete header field.
func fieldValue(f []byte) string {
	v := string(f[bytes.IndexByte(f, ':')+1:])
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.TrimSpace(v)
}

// lineReader yields CRLF-terminated lines, converting bare LF endings, and
// reports the end of input at EOF or, when dots is set, at a line that is a
// single ".". Very long lines come back in pieces; only a piece that starts
// a line can be the "." terminator.
type lineReader struct {
	br      *bufio.Reader
	dots    bool
	pending []byte // a line pushed back by unread
	midLine bool   // the previous piece did not end a line
	started bool   // the piece last returned starts a line
	eof     bool
}

// line returns the next line (or piece of a long line), nil at the end.
func (l *lineReader) line() ([]byte, error) {
	if l.pending != nil {
		p := l.pending
		l.pending = nil
		l.started = true
		return p, nil
	}
	if l.eof {
		return nil, nil
	}
	b, err := l.br.ReadSlice('\n')
	startOfLine := !l.midLine
	l.started = startOfLine
	switch {
	case err == nil:
		l.midLine = false
	case errors.Is(err, bufio.ErrBufferFull):
		l.midLine = true
		// Keep a trailing CR for the next piece so that a CRLF split
		// across pieces is not seen as a bare LF.
		if n := len(b); n > 1 && b[n-1] == '\r' {
			b = b[:n-1]
			l.br.UnreadByte()
		}
		return bytes.Clone(b), nil
	case err == io.EOF:
		l.eof = true
		if len(b) == 0 {
			return nil, nil
		}
		l.midLine = false
	default:
		return nil, err
	}
	if startOfLine && l.dots && isDotLine(b) {
		l.eof = true
		return nil, nil
	}
	out := make([]byte, 0, len(b)+2)
	out = append(out, b...)
	switch {
	case bytes.HasSuffix(out, []byte("\r\n")):
	case bytes.HasSuffix(out, []byte("\n")):
		out = append(out[:len(out)-1], '\r', '\n')
	default: // last line without a line ending
		out = append(out, '\r', '\n')
	}
	return out, nil
}

func (l *lineReader) unread(line []byte) { l.pending = line }

// isDotLine reports a line consisting of a single "." (sendmail's end of
// input without -i), with LF or CRLF, or at EOF without an ending.
func isDotLine(b []byte) bool {
	s := string(b)
	return s == "." || s == ".\n" || s == ".\r\n"
}

// bodyReader streams the rest of a lineReader as an io.Reader.
type bodyReader struct {
	lr  *lineReader
	buf []byte
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		line, err := b.lr.line()
		if err != nil {
			return 0, exitf(sysexits.DataErr, err, "reading message")
		}
		if line == nil {
			return 0, io.EOF
		}
		b.buf = line
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}
