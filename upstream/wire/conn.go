package wire

import (
	"bufio"
	"errors"
	"io"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Conn is relayd's own access to the connection of a go-smtp Client: it
// writes commands and bodies to it and reads replies with a reader of its
// own. It sets no deadline: rw must be the very connection the Client was
// made with, whose reads and writes carry their deadlines (upstream's
// deadlineConn and replyConn).
type Conn struct {
	rw io.ReadWriter
	r  *textproto.Reader
}

// New returns the seam onto rw, the connection a go-smtp Client uses.
func New(rw io.ReadWriter) *Conn {
	return &Conn{rw: rw, r: textproto.NewReader(bufio.NewReader(&lineLimit{r: rw}))}
}

// errLine is returned by Send for a command line with CR or LF in it; go-smtp
// refuses those too (validateLine).
var errLine = errors.New("wire: a command line must not contain CR or LF")

// Send writes the command lines, each ended with CRLF, in one write (RFC
// 2920 §3.1: a pipelined group). Nothing is sent when a line contains CR
// or LF. The caller reads one Reply per line, in order.
func (c *Conn) Send(lines ...string) error {
	var b strings.Builder
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return errLine
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	_, err := io.WriteString(c.rw, b.String())
	return err
}

// Cmd sends one command line and reads its reply.
func (c *Conn) Cmd(line string) (Reply, error) {
	if err := c.Send(line); err != nil {
		return Reply{}, err
	}
	return c.Reply()
}

// Reply reads the next reply, whatever its code. An error is the
// connection's (a read error or deadline, smtp.ErrTooLongLine, a line
// textproto cannot parse: a *textproto.ProtocolError) and leaves it
// unusable.
func (c *Conn) Reply() (Reply, error) {
	code, text, err := c.r.ReadResponse(0)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Code: code, Text: text}, nil
}

// Reply is one server reply as textproto reads it for go-smtp: the code,
// and the text of its lines joined by "\n", each without its code.
type Reply struct {
	Code int
	Text string
}

// SMTPError is r as go-smtp's Client reports a reply it did not expect: an
// RFC 3463 enhanced code in the first word is split off (and dropped from
// the lines that repeat it, RFC 2034); without one, EnhancedCode is
// smtp.EnhancedCodeNotSet and Message is the whole text.
func (r Reply) SMTPError() *smtp.SMTPError {
	se := &smtp.SMTPError{Code: r.Code, Message: r.Text}
	first, rest, ok := strings.Cut(r.Text, " ")
	if !ok {
		return se
	}
	ec, ok := enhancedCode(first)
	if !ok {
		return se
	}
	se.EnhancedCode = ec
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}

// enhancedCode parses "x.y.z" as go-smtp does: exactly three
// dot-separated parts, each as strconv.Atoi takes it (signs included).
func enhancedCode(s string) (smtp.EnhancedCode, bool) {
	var ec smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != len(ec) {
		return ec, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return ec, false
		}
		ec[i] = n
	}
	return ec, true
}

// GoSMTPLineLimit is go-smtp's Client's line limit (its lineLimitReader):
// a reply line may have at most GoSMTPLineLimit-1 octets before its LF,
// the CR included (go-smtp counts the LF before a line as part of it). The
// seam refuses longer ones with go-smtp's error, smtp.ErrTooLongLine.
const GoSMTPLineLimit = 2000

// lineLimit applies GoSMTPLineLimit per line. It passes on only complete
// lines (and, at a read error, what came before it), so an over-long line
// is refused as a whole: go-smtp's lineLimitReader counts per read and
// drops the read where the limit is crossed, so a long line whose start
// came in an earlier read reaches go-smtp's textproto truncated, as if
// complete, and the error comes with the next reply. With the whole reply
// in one read, which is what the differential tests send, both refuse
// the same reply.
type lineLimit struct {
	r     io.Reader
	buf   []byte // read, not yet passed on
	ready int    // buf[:ready] may be passed on
	col   int    // octets of the incomplete line at the end of buf
	err   error  // sticky, returned once buf[:ready] is passed on
	tmp   []byte
}

func (l *lineLimit) Read(p []byte) (int, error) {
	for l.ready == 0 {
		if l.err != nil {
			return 0, l.err
		}
		if l.tmp == nil {
			l.tmp = make([]byte, 4096)
		}
		n, err := l.r.Read(l.tmp)
		for _, b := range l.tmp[:n] {
			l.buf = append(l.buf, b)
			if b == '\n' {
				l.ready, l.col = len(l.buf), 0
				continue
			}
			if l.col++; l.col >= GoSMTPLineLimit {
				l.buf, l.err = l.buf[:l.ready], smtp.ErrTooLongLine
				break
			}
		}
		if err != nil && l.err == nil {
			l.ready, l.err = len(l.buf), err
		}
	}
	n := copy(p, l.buf[:l.ready])
	l.buf = l.buf[:copy(l.buf, l.buf[n:])]
	l.ready -= n
	return n, nil
}
