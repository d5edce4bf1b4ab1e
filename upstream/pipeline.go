package upstream

import (
	"bufio"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"relayd/queue"
)

// Command pipelining (RFC 2920).
//
// go-smtp's Client sends a command and waits for its reply, so a message
// costs a round trip for MAIL, each RCPT, DATA and the final dot. When the
// server offers PIPELINING and the envelope needs no parameter beyond BODY
// and SIZE (no DSN parameters, no SMTPUTF8: those keep go-smtp's path),
// transact sends MAIL, every RCPT and DATA in one write, reads their replies
// in order (RFC 2920 §3.1: every reply is read, whatever came before), then
// sends the body and the final dot in one more write: two round trips per
// message.
//
// The replies are read with the session's own reader on the same
// connection as go-smtp's Client. Both readers are empty between
// transactions: a server sends nothing that was not asked for, and each
// reader consumes exactly the replies to the commands sent through it.

// maxPipelined bounds the recipients sent in one pipelined write: with
// thousands, both sides could fill their socket buffers before either reads
// (RFC 2920 §3.1 warns of this). More take go-smtp's path.
const maxPipelined = 100

// pipelinable reports whether d can take the pipelined path on s.
func pipelinable(s *session, d *queue.Delivery, opts *smtp.MailOptions, dsn bool) bool {
	if len(d.Rcpts) > maxPipelined {
		return false
	}
	if ok, _ := s.c.Extension("PIPELINING"); !ok {
		return false
	}
	if opts.UTF8 || opts.Return != "" || opts.EnvelopeID != "" {
		return false
	}
	for _, r := range d.Rcpts {
		if o := rcptOptions(r, dsn); o != nil && (len(o.Notify) > 0 || o.OriginalRecipient != "") {
			return false
		}
	}
	return true
}

// transactPipelined is the pipelined transaction (see above); out has one
// nil slot per recipient, all returns as for transact.
func (c *Client) transactPipelined(s *session, d *queue.Delivery, opts *smtp.MailOptions, body io.Reader, out queue.Outcome) (queue.Outcome, *Error) {
	var cmds strings.Builder
	cmds.WriteString("MAIL FROM:<" + d.From + ">")
	cmds.WriteString(bodyParam(s, d)) // RFC 6152 §3, only for an 8-bit body
	if ok, _ := s.c.Extension("SIZE"); ok && opts.Size > 0 {
		cmds.WriteString(" SIZE=" + strconv.FormatInt(opts.Size, 10)) // RFC 1870
	}
	cmds.WriteString("\r\n")
	sent := make([]bool, len(d.Rcpts))
	for i, r := range d.Rcpts {
		if badLine(r.Addr) {
			out.Rcpts[i] = errRcptLine
			continue
		}
		sent[i] = true
		cmds.WriteString("RCPT TO:<" + r.Addr + ">\r\n")
	}
	cmds.WriteString("DATA\r\n")

	s.open = true
	if _, err := io.WriteString(s.wire, cmds.String()); err != nil {
		return out, sessionError(StageMail, s.addr, err)
	}
	if s.rd == nil {
		s.rd = textproto.NewReader(bufio.NewReader(s.wire))
	}
	mail, e := s.reply(StageMail)
	if e != nil {
		return out, e
	}
	accepted := 0
	for i := range d.Rcpts {
		if !sent[i] {
			continue
		}
		se, e := s.reply(StageRcpt)
		if e != nil {
			return out, e
		}
		if se == nil {
			accepted++
		} else {
			out.Rcpts[i] = rcptRefusal(se)
		}
	}
	data, e := s.replyData()
	if e != nil {
		return out, e
	}

	all := func(se *smtp.SMTPError) (queue.Outcome, *Error) { return fillUndecided(out, se), nil }
	switch {
	case mail != nil:
		if data == nil { // a server that took DATA after refusing MAIL
			if e := s.endEmpty(); e != nil {
				return out, e
			}
		}
		// 4xx or 5xx at MAIL applies to every recipient, whatever the
		// RCPTs behind it got (503 for want of a MAIL).
		for i := range out.Rcpts {
			out.Rcpts[i] = mail
		}
		return out, nil
	case data != nil:
		if accepted == 0 {
			return out, nil
		}
		return all(data)
	case accepted == 0:
		// RFC 2920 §3.1: DATA accepted although no recipient was: send
		// an empty content and ignore the reply.
		if e := s.endEmpty(); e != nil {
			return out, e
		}
		return out, nil
	}

	src := &readErr{r: body}
	dw, rbuf := newDataWriter(s.wire, d.Size)
	defer dw.release()
	_, err := io.CopyBuffer(dw, src, rbuf)
	if err == nil {
		err = dw.end()
	}
	if err != nil {
		// Never the final dot after a failed copy (see transact).
		if src.err != nil {
			return out, &Error{Stage: StageData, Addr: s.addr, Temporary: true, Err: fmt.Errorf("read message %s: %w", d.ID, src.err)}
		}
		return out, sessionError(StageData, s.addr, err)
	}
	final, e := s.reply(StageData)
	if e != nil {
		return out, e // no reply to the dot: deferred (RFC 5321 §6.1)
	}
	s.open = false
	if final != nil {
		return all(final)
	}
	return out, nil
}

// reply reads one reply: nil for 2xx, the reply for 4xx and 5xx (but 421,
// which ends the session and is a session *Error, like a broken read).
func (s *session) reply(stage Stage) (*smtp.SMTPError, *Error) {
	return s.replyWant(stage, 2)
}

// replyData reads the reply to DATA: only 354 lets the content go (a
// server answering 2xx would take the content for commands).
func (s *session) replyData() (*smtp.SMTPError, *Error) {
	return s.replyWant(StageData, 3)
}

// replyWant reads one reply; class (2 or 3) is the success class.
func (s *session) replyWant(stage Stage, class int) (*smtp.SMTPError, *Error) {
	got, msg, err := s.rd.ReadResponse(0)
	if err != nil {
		return nil, sessionError(stage, s.addr, err)
	}
	if got/100 == class && (class != 3 || got == 354) {
		return nil, nil
	}
	se := replyError(got, msg)
	if got == 421 || got/100 != 4 && got/100 != 5 {
		return nil, sessionError(stage, s.addr, se)
	}
	return se, nil
}

// endEmpty ends a DATA that was accepted with no content worth sending:
// just the dot, reply read and ignored.
func (s *session) endEmpty() *Error {
	if _, err := io.WriteString(s.wire, ".\r\n"); err != nil {
		return sessionError(StageData, s.addr, err)
	}
	if _, e := s.reply(StageData); e != nil {
		return e
	}
	s.open = false
	return nil
}
