package upstream

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-smtp"

	"relayd/queue"
)

// transact runs MAIL, RCPT for every recipient, DATA and the body for one
// Delivery, preceded by RSET only when the connection's previous
// transaction did not end with a reply to the final dot. Replies to MAIL, RCPT and
// DATA become per-recipient results; anything else (network, 421, a body
// that cannot be read) is a session *Error and the connection must be
// dropped.
func (c *Client) transact(s *session, d *queue.Delivery) (queue.Outcome, *Error) {
	out := queue.Outcome{Relay: s.relay, Rcpts: make([]*smtp.SMTPError, len(d.Rcpts))}
	if len(d.Rcpts) == 0 {
		return out, nil
	}
	if s.open {
		// A transaction was left open (MAIL rejected, no recipient
		// accepted, DATA refused). go-smtp's Reset makes the next command
		// re-send EHLO, with the name given to Hello, i.e. cfg.Hostname.
		// After a reply to the final dot no RSET is needed: that reply
		// ends the transaction and clears the server's buffers (RFC 5321
		// §4.1.1.4), and skipping RSET and the EHLO after it saves two of
		// six round trips per message on a reused connection.
		if err := s.c.Reset(); err != nil {
			return out, sessionError(StageReset, s.addr, err)
		}
		s.open = false
	}

	// Open before MAIL so a local failure sends nothing.
	body, err := d.Open()
	if err != nil {
		return out, &Error{Stage: StageData, Addr: s.addr, Temporary: true, Err: fmt.Errorf("open message %s: %w", d.ID, err)}
	}
	defer body.Close()

	all := func(se *smtp.SMTPError) (queue.Outcome, *Error) { return fillUndecided(out, se), nil }

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
		return c.transactPipelined(s, d, opts, body, out)
	}
	s.open = true
	if err := s.mail(d, opts); err != nil {
		if se, ok := serverReply(err); ok {
			return all(se) // 4xx or 5xx at MAIL applies to every recipient
		}
		return out, sessionError(StageMail, s.addr, err)
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
			return out, sessionError(StageRcpt, s.addr, err)
		}
		out.Rcpts[i] = rcptRefusal(se)
	}
	if accepted == 0 {
		return out, nil // nothing to send; the connection stays usable
	}

	w, err := s.c.Data()
	if err != nil {
		if se, ok := serverReply(err); ok {
			return all(se)
		}
		return out, sessionError(StageData, s.addr, err)
	}
	// The body bypasses go-smtp's byte-at-a-time DotWriter: dataWriter
	// encodes it in bulk straight onto the wire after the 354 (the Client's
	// buffered writer is empty then: DATA was flushed). Its final CRLF goes
	// through w, so w's Close adds just ".\r\n" and reads the reply.
	src := &readErr{r: body}
	dw, rbuf := newDataWriter(s.wire, d.Size)
	defer dw.release()
	_, err = io.CopyBuffer(dw, src, rbuf)
	var tail []byte
	if err == nil {
		tail, err = dw.finish()
	}
	if err == nil && len(tail) > 0 {
		_, err = w.Write(tail)
	}
	if err != nil {
		// Never send the final dot after a failed copy: a truncated message
		// would be accepted. Dropping the connection aborts the transaction.
		if src.err != nil {
			return out, &Error{Stage: StageData, Addr: s.addr, Temporary: true, Err: fmt.Errorf("read message %s: %w", d.ID, src.err)}
		}
		return out, sessionError(StageData, s.addr, err)
	}
	_, err = w.CloseWithResponse()
	if err == nil {
		s.open = false
	}
	if err != nil {
		if se, ok := serverReply(err); ok {
			s.open = false // a reply to the dot ends the transaction too
			return all(se)
		}
		// No reply to the final dot: not acknowledged, so deferred (RFC
		// 5321 §6.1: a duplicate is better than a loss).
		return out, sessionError(StageData, s.addr, err)
	}
	return out, nil
}

// serverReply returns the server's reply in err, unless it is 421, which
// closes the session (RFC 5321 §3.8) and is therefore session-level.
func serverReply(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code == 421 {
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
func fillUndecided(out queue.Outcome, se *smtp.SMTPError) queue.Outcome {
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
func (c *Client) mailOptions(s *session, d *queue.Delivery) (*smtp.MailOptions, *smtp.SMTPError) {
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
func rcptOptions(r queue.Recipient, dsn bool) *smtp.RcptOptions {
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

func envelopeASCII(d *queue.Delivery) bool {
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
