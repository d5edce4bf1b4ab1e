package upstream

import (
	"fmt"
	"io"
	"strconv"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
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
// The commands, the body and the replies go through the wire seam
// (upstream/wire), on the same connection as go-smtp's Client; its package
// doc says why go-smtp's reader and the seam's stay apart. What the
// replies mean (RFC 2920 §3.1) is decided here.

// maxPipelined bounds the recipients sent in one pipelined write: with
// thousands, both sides could fill their socket buffers before either reads
// (RFC 2920 §3.1 warns of this). More take go-smtp's path.
const maxPipelined = 100

// pipelinable reports whether d can take the pipelined path on s.
func pipelinable(s *session, d *envelope.Delivery, opts *smtp.MailOptions, dsn bool) bool {
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
// nil slot per recipient, all returns as for transactOnce.
//
// RFC 2920 §3.1: when MAIL or every RCPT was refused, the server should
// refuse DATA (554 or 503) and no content is sent. A server that answers
// 354 anyway gets no content at all, not even the lone dot the RFC
// suggests: a server whose idea of the transaction differs from relayd's
// (one that still holds an older envelope) would queue an empty message
// for it. The connection is dropped instead, which aborts the transaction
// (RFC 5321 §3.8).
func (c *Client) transactPipelined(s *session, d *envelope.Delivery, opts *smtp.MailOptions, body io.Reader, out envelope.Outcome) (txResult, *Error) {
	fail := func(e *Error) (txResult, *Error) { return txResult{out: out}, e }
	mailCmd := "MAIL FROM:<" + d.From + ">"
	mailCmd += bodyParam(s, d) // RFC 6152 §3, only for an 8-bit body
	if ok, _ := s.c.Extension("SIZE"); ok && opts.Size > 0 {
		mailCmd += " SIZE=" + strconv.FormatInt(opts.Size, 10) // RFC 1870
	}
	cmds := []string{mailCmd}
	sent := make([]bool, len(d.Rcpts))
	for i, r := range d.Rcpts {
		if badLine(r.Addr) {
			out.Rcpts[i] = errRcptLine
			continue
		}
		sent[i] = true
		cmds = append(cmds, "RCPT TO:<"+r.Addr+">")
	}
	cmds = append(cmds, "DATA")

	s.open = true
	if err := s.wireConn().Send(cmds...); err != nil {
		return fail(sessionError(StageMail, s.addr, err))
	}
	mail, e := s.reply(StageMail)
	if e != nil {
		return fail(e)
	}
	accepted, rcpt503 := 0, (*smtp.SMTPError)(nil)
	var throttle *smtp.SMTPError // the first rate-limit reply (throttle.go)
	var throttleStage Stage
	for i := range d.Rcpts {
		if !sent[i] {
			continue
		}
		se, e := s.reply(StageRcpt)
		if e != nil {
			return fail(e)
		}
		if throttled(se) && throttle == nil {
			throttle, throttleStage = se, StageRcpt
		}
		switch {
		case se == nil:
			accepted++
		case se.Code == 503 && mail == nil && rcpt503 == nil:
			rcpt503 = se
		default:
			out.Rcpts[i] = rcptRefusal(se)
		}
	}
	data, e := s.replyData()
	if e != nil {
		return fail(e)
	}
	if throttle != nil || throttled(mail) || throttled(data) {
		// The smarthost is rate limiting: nothing of this group counts,
		// and no content follows even a 354.
		if throttle == nil {
			throttle, throttleStage = mail, StageMail
			if !throttled(mail) {
				throttle, throttleStage = data, StageData
			}
		}
		return fail(throttleError(s, throttleStage, throttle))
	}

	switch {
	case mail != nil:
		if data == nil { // 354 after a refused MAIL: never any content
			s.dead = true
		}
		// 4xx or 5xx at MAIL applies to every recipient, whatever the
		// RCPTs behind it got (503 for want of a MAIL).
		for i := range out.Rcpts {
			out.Rcpts[i] = mail
		}
		return txResult{out: out, badSequence: mail.Code == 503, mailRefused: mail}, nil
	case rcpt503 != nil:
		// MAIL was accepted, yet a RCPT is out of sequence.
		return fail(outOfSequence(s, StageRcpt, rcpt503))
	case accepted == 0:
		if data == nil { // 354 although no recipient was accepted
			s.dead = true
		}
		return txResult{out: out}, nil // RSET before the next MAIL
	case data != nil:
		if data.Code == 503 {
			return fail(outOfSequence(s, StageData, data))
		}
		return txResult{out: fillUndecided(out, data)}, nil
	}

	src := &readErr{r: body}
	if err := s.wireConn().WriteBody(src, d.Size); err != nil {
		// Never the final dot after a failed copy (see transact).
		if src.err != nil {
			return fail(&Error{Stage: StageData, Addr: s.addr, Temporary: true, Err: fmt.Errorf("read message %s: %w", d.ID, src.err)})
		}
		return fail(sessionError(StageData, s.addr, err))
	}
	final, e := s.reply(StageData)
	if e != nil {
		return fail(e) // no reply to the dot: deferred (RFC 5321 §6.1)
	}
	if final != nil {
		// s.open stays set: RSET before the next MAIL.
		if final.Code == 503 {
			return fail(outOfSequence(s, StageData, final))
		}
		if throttled(final) {
			return fail(throttleError(s, StageData, final))
		}
		return txResult{out: fillUndecided(out, final)}, nil
	}
	s.open = false // a 2xx to the final dot ends the transaction
	return txResult{out: out}, nil
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
	r, err := s.wireConn().Reply()
	if err != nil {
		return nil, sessionError(stage, s.addr, err)
	}
	if got := r.Code; got/100 == class && (class != 3 || got == 354) {
		return nil, nil
	}
	se := r.SMTPError()
	if got := r.Code; got == 421 || got/100 != 4 && got/100 != 5 {
		return nil, sessionError(stage, s.addr, se)
	}
	return se, nil
}
