package upstream

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
	"relayd/upstream/wire"
)

// transact runs MAIL, RCPT for every recipient, DATA and the body for one
// Delivery. Replies to MAIL, RCPT and DATA become per-recipient results;
// anything else (network, 421, a body that cannot be read) is a session
// *Error and the connection must be dropped.
//
// Transaction state (RFC 5321 §4.1.1.4, §4.1.1.5): only a 2xx reply to the
// final dot ends a transaction cleanly. After anything else (a refused
// MAIL, every RCPT refused, a refused DATA, a 4xx or 5xx to the final dot)
// s.open stays set and the next transaction on the connection starts with
// RSET, so a server that still holds the old envelope (seen with Postfix)
// can never add the next message's recipients to it.
//
// A 503 (bad sequence of commands) to MAIL is a verdict on relayd's
// protocol state, not on the message: the session is reset and MAIL tried
// once more; a second 503 defers the delivery (session *Error), it never
// bounces.
func (c *Client) transact(s *session, d *envelope.Delivery) (envelope.Outcome, *Error) {
	out, e := c.transactOne(s, d)
	if e != nil {
		return out, e
	}
	// Envelope splitting: a smarthost that takes fewer recipients per
	// transaction than the message has answers the rest "452 4.5.3 too
	// many recipients" (RFC 5321 §4.5.3.1.10); they go in further
	// transactions on the same connection, as long as each one delivers
	// to at least one recipient.
	round := make([]int, len(d.Rcpts))
	for i := range round {
		round[i] = i
	}
	for !s.dead {
		var rest []int
		progress := false
		for _, i := range round {
			switch r := out.Rcpts[i]; {
			case r == nil:
				progress = true
			case tooManyRcpts(r):
				rest = append(rest, i)
			}
		}
		if len(rest) == 0 || !progress {
			break
		}
		sub := *d
		sub.Rcpts = make([]envelope.Recipient, len(rest))
		for k, i := range rest {
			sub.Rcpts[k] = d.Rcpts[i]
		}
		o, e := c.transactOne(s, &sub)
		if e != nil {
			// The first recipients are sent: report them; the rest
			// stay deferred with their 452, on a new connection next time.
			s.dead = true
			c.log.Debug("smarthost failed during a split envelope, the rest is deferred", "id", d.ID, "err", e.Error())
			break
		}
		for k, i := range rest {
			out.Rcpts[i] = o.Rcpts[k]
		}
		round = rest
	}
	return out, nil
}

// tooManyRcpts reports a "too many recipients" refusal (452, or 552 that
// rcptRefusal made temporary; RFC 3463 X.5.3).
func tooManyRcpts(se *smtp.SMTPError) bool {
	return se.Code == 452 && (se.EnhancedCode == smtp.EnhancedCode{4, 5, 3} || strings.Contains(strings.ToLower(se.Message), "recipients"))
}

// transactOne is one transaction (with its RSET and 503 retry), see
// transact.
func (c *Client) transactOne(s *session, d *envelope.Delivery) (envelope.Outcome, *Error) {
	out := envelope.Outcome{Relay: s.relay, Rcpts: make([]*smtp.SMTPError, len(d.Rcpts))}
	if len(d.Rcpts) == 0 {
		return out, nil
	}
	// Open before MAIL so a local failure sends nothing.
	body, err := d.Open()
	if err != nil {
		return out, &Error{Stage: StageData, Addr: s.addr, Temporary: true, Err: fmt.Errorf("open message %s: %w", d.ID, err)}
	}
	defer body.Close()
	for try := 0; ; try++ {
		if s.open {
			if e := s.rset(); e != nil {
				return out, e
			}
		}
		res, e := c.transactOnce(s, d, body)
		if e != nil || !res.badSequence {
			return res.out, e
		}
		// Nothing of the body was read: a 503 at MAIL comes before DATA.
		if try == 0 && !s.dead {
			c.log.Debug("smarthost answered 503 to MAIL: resetting the session and trying again", "id", d.ID, "addr", s.addr)
			s.open = true
			continue
		}
		s.dead = true
		se := res.out.Rcpts[0]
		return out, &Error{Stage: StageMail, Addr: s.addr, Temporary: true, Code: se.Code, Enhanced: se.EnhancedCode, Message: se.Message,
			Hint: "the smarthost answered 503 (bad sequence of commands) to MAIL even after RSET: deferred, never bounced"}
	}
}

// txResult is one transaction's answer. badSequence: MAIL got 503, which
// says nothing about the message (see transact). mailRefused: the
// pipelined MAIL's refusal, when MAIL was refused.
type txResult struct {
	out         envelope.Outcome
	badSequence bool
	mailRefused *smtp.SMTPError
}

// NullSenderRefused ends the reply text of a permanent refusal of MAIL
// FROM:<> (Amazon SES answers 501 to it), so that whoever handles the
// failed notice can tell this cause from the others: the admin's copy of
// such a notice is then sent from the admin's own address (see
// upstream.null_sender).
const NullSenderRefused = "(refused at MAIL FROM:<>)"

// nullRefused marks se, a refusal of MAIL, when the sender was <> and the
// refusal permanent.
func nullRefused(se *smtp.SMTPError, nullSender bool) *smtp.SMTPError {
	if !nullSender || se.Code/100 != 5 {
		return se
	}
	m := *se
	m.Message = strings.TrimSpace(m.Message + " " + NullSenderRefused)
	return &m
}

// nullRefusedAtMail marks se when it is the pipelined MAIL's refusal.
func nullRefusedAtMail(se, mail *smtp.SMTPError) *smtp.SMTPError {
	if se == nil || se != mail {
		return se
	}
	return nullRefused(se, true)
}

// rset ends an open transaction with RSET (RFC 5321 §4.1.1.5), through
// the wire seam: go-smtp's Client.Reset would make its next command
// re-send EHLO, which some servers (OpenSMTPD) refuse with 503 on an
// established session. After RSET the session goes straight on with MAIL.
func (s *session) rset() *Error {
	if err := s.wireConn().Send("RSET"); err != nil {
		return sessionError(StageReset, s.addr, err)
	}
	se, e := s.reply(StageReset)
	if e != nil {
		return e
	}
	if se != nil {
		return sessionError(StageReset, s.addr, se)
	}
	s.open = false
	return nil
}

// wireConn returns the session's seam onto go-smtp's connection
// (upstream/wire).
func (s *session) wireConn() *wire.Conn {
	if s.wr == nil {
		s.wr = wire.New(s.wire)
	}
	return s.wr
}

// outOfSequence is a session *Error for a 503 where relayd's own state
// says the command was in sequence: the two sides disagree about the
// transaction, so the connection is dropped and the delivery deferred.
func outOfSequence(s *session, stage Stage, se *smtp.SMTPError) *Error {
	s.dead = true
	e := sessionError(stage, s.addr, se)
	e.Hint = "the smarthost answered 503 (bad sequence of commands): relayd and the smarthost disagree about the transaction; deferred, never bounced"
	return e
}

func (c *Client) transactOnce(s *session, d *envelope.Delivery, body io.Reader) (txResult, *Error) {
	out := envelope.Outcome{Relay: s.relay, Rcpts: make([]*smtp.SMTPError, len(d.Rcpts))}
	all := func(se *smtp.SMTPError) (txResult, *Error) { return txResult{out: fillUndecided(out, se)}, nil }
	fail := func(e *Error) (txResult, *Error) { return txResult{out: out}, e }

	nullSender := d.From == ""
	if d.From == "" && c.cfg.NullSender != "" {
		// A smarthost that refuses <> (upstream.null_sender): the
		// notice goes with this sender; d is a copy for this attempt.
		nd := *d
		nd.From = c.cfg.NullSender
		d = &nd
	}
	if bad := badLine(d.From); bad {
		return all(&smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "sender address contains CR or LF"})
	}
	opts, se := c.mailOptions(s, d)
	if se != nil {
		return all(se)
	}
	dsn, _ := s.c.Extension("DSN")
	out.DSNPassed = dsn
	if pipelinable(s, d, opts, dsn) {
		res, e := c.transactPipelined(s, d, opts, body, out)
		if e == nil && nullSender && len(res.out.Rcpts) > 0 && res.out.Rcpts[0] != nil && !res.badSequence {
			for i, se := range res.out.Rcpts {
				res.out.Rcpts[i] = nullRefusedAtMail(se, res.mailRefused)
			}
		}
		return res, e
	}
	s.open = true
	if err := s.mail(d, opts); err != nil {
		if se, ok := serverReply(err); ok {
			if se.Code == 503 {
				return txResult{out: fillUndecided(out, se), badSequence: true}, nil
			}
			if throttled(se) {
				return fail(throttleError(s, StageMail, se))
			}
			return all(nullRefused(se, nullSender)) // 4xx or 5xx at MAIL applies to every recipient
		}
		return fail(sessionError(StageMail, s.addr, err))
	}

	accepted := 0
	for i, r := range d.Rcpts {
		if badLine(r.Addr) {
			out.Rcpts[i] = errRcptLine
			continue
		}
		err := s.c.Rcpt(r.Addr, rcptOptions(r, dsn))
		if err == nil {
			accepted++
			continue
		}
		se, ok := serverReply(err)
		if !ok {
			return fail(sessionError(StageRcpt, s.addr, err))
		}
		if se.Code == 503 {
			return fail(outOfSequence(s, StageRcpt, se))
		}
		if throttled(se) {
			return fail(throttleError(s, StageRcpt, se))
		}
		out.Rcpts[i] = rcptRefusal(se)
	}
	if accepted == 0 {
		return txResult{out: out}, nil // nothing to send; RSET before the next MAIL
	}

	w, err := s.c.Data()
	if err != nil {
		if se, ok := serverReply(err); ok {
			if se.Code == 503 {
				return fail(outOfSequence(s, StageData, se))
			}
			if throttled(se) {
				return fail(throttleError(s, StageData, se))
			}
			return all(se)
		}
		return fail(sessionError(StageData, s.addr, err))
	}
	// The body bypasses go-smtp's byte-at-a-time DotWriter: the seam
	// writes what io.Copy(w, src) would, in bulk.
	src := &readErr{r: body}
	if err = s.wireConn().WriteData(w, src, d.Size); err != nil {
		// Never send the final dot after a failed copy: a truncated message
		// would be accepted. Dropping the connection aborts the transaction.
		if src.err != nil {
			return fail(&Error{Stage: StageData, Addr: s.addr, Temporary: true, Err: fmt.Errorf("read message %s: %w", d.ID, src.err)})
		}
		return fail(sessionError(StageData, s.addr, err))
	}
	_, err = w.CloseWithResponse()
	if err != nil {
		if se, ok := serverReply(err); ok {
			// s.open stays set: RSET before the next MAIL.
			if se.Code == 503 {
				return fail(outOfSequence(s, StageData, se))
			}
			if throttled(se) {
				return fail(throttleError(s, StageData, se))
			}
			return all(se)
		}
		// No reply to the final dot: not acknowledged, so deferred (RFC
		// 5321 §6.1: a duplicate is better than a loss).
		return fail(sessionError(StageData, s.addr, err))
	}
	s.open = false // a 2xx to the final dot ends the transaction
	return txResult{out: out}, nil
}

// serverReply returns the server's 4xx or 5xx reply in err. A 421 closes
// the session (RFC 5321 §3.8) and any other code where a refusal was
// expected (e.g. 250 to DATA) is a protocol violation: both are
// session-level.
func serverReply(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code == 421 || se.Code/100 != 4 && se.Code/100 != 5 {
		return nil, false
	}
	return se, true
}

// errRcptLine answers a recipient that cannot be put on a command line.
var errRcptLine = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "recipient address contains CR or LF"}

// rcptRefusal is a server's refusal of a RCPT as the recipient's outcome:
// 552 there means "too many recipients" and is temporary (RFC 5321
// §4.5.3.1.10).
func rcptRefusal(se *smtp.SMTPError) *smtp.SMTPError {
	if se.Code == 552 {
		return &smtp.SMTPError{Code: 452, EnhancedCode: tempClass(se.EnhancedCode), Message: se.Message}
	}
	return se
}

// fillUndecided gives se to every recipient of out without an outcome yet
// (a reply to MAIL, DATA or the final dot) and returns out.
func fillUndecided(out envelope.Outcome, se *smtp.SMTPError) envelope.Outcome {
	for i := range out.Rcpts {
		if out.Rcpts[i] == nil {
			out.Rcpts[i] = se
		}
	}
	return out
}

func tempClass(ec smtp.EnhancedCode) smtp.EnhancedCode {
	if ec[0] == 5 {
		ec[0] = 4
	}
	return ec
}

func badLine(s string) bool { return strings.ContainsAny(s, "\r\n") }

// mailOptions builds the MAIL parameters the server advertised. go-smtp adds
// BODY=8BITMIME by itself whenever 8BITMIME is offered, and SIZE when the
// server advertised SIZE and Size is non-zero (RFC 1870).
func (c *Client) mailOptions(s *session, d *envelope.Delivery) (*smtp.MailOptions, *smtp.SMTPError) {
	c.note8Bit(s)
	opts := &smtp.MailOptions{Size: d.Size}
	if d.UTF8 {
		if ok, _ := s.c.Extension("SMTPUTF8"); ok {
			opts.UTF8 = true
		} else if !envelopeASCII(d) {
			// RFC 6531: a non-ASCII address cannot be relayed to a server
			// without SMTPUTF8; 5.6.7 is the status it defines for this.
			// An all-ASCII envelope is sent without the parameter.
			return nil, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
				Message: "smarthost does not support SMTPUTF8, needed for a non-ASCII address"}
		}
	}
	if ok, _ := s.c.Extension("DSN"); ok { // RFC 3461 §4
		if ret := strings.ToUpper(d.Ret); ret == "FULL" || ret == "HDRS" {
			opts.Return = smtp.DSNReturn(ret)
		}
		if printableASCII(d.EnvID) {
			opts.EnvelopeID = d.EnvID
		}
	}
	return opts, nil
}

// rcptOptions passes NOTIFY and ORCPT on when the server offers DSN (RFC
// 3461 §4.1, §4.2). Malformed values are dropped rather than failing.
func rcptOptions(r envelope.Recipient, dsn bool) *smtp.RcptOptions {
	if !dsn {
		return nil
	}
	o := &smtp.RcptOptions{}
	if n := notify(r.Notify); n != nil {
		o.Notify = n
	}
	if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok && addr != "" {
		switch strings.ToUpper(typ) {
		case "RFC822":
			if printableASCII(addr) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
			}
		case "UTF-8":
			if !badLine(addr) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
			}
		}
	}
	return o
}

// notify validates a NOTIFY list: NEVER alone, or a set of SUCCESS, FAILURE,
// DELAY without repeats (RFC 3461 §4.1).
func notify(in []string) []smtp.DSNNotify {
	if len(in) == 0 {
		return nil
	}
	seen := map[smtp.DSNNotify]bool{}
	var out []smtp.DSNNotify
	for _, v := range in {
		n := smtp.DSNNotify(strings.ToUpper(strings.TrimSpace(v)))
		switch n {
		case smtp.DSNNotifyNever, smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed:
		default:
			return nil
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if seen[smtp.DSNNotifyNever] && len(out) > 1 {
		return nil
	}
	return out
}

func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func envelopeASCII(d *envelope.Delivery) bool {
	if !isASCII(d.From) {
		return false
	}
	for _, r := range d.Rcpts {
		if !isASCII(r.Addr) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// readErr remembers a read error so a local failure is told apart from a
// network one.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
