package upstream

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
)

// The body type on MAIL (RFC 6152 §3): go-smtp's Client adds BODY=8BITMIME
// to every MAIL when the server offers 8BITMIME. relayd declares it only
// when the message has 8-bit octets: cleanup records that in the envelope
// (Body "7BIT" or "8BITMIME"); an entry from before it did ("") may have
// them and keeps the parameter.

// bodyParam is the BODY parameter for d's MAIL command, with its space.
func bodyParam(s *session, d *envelope.Delivery) string {
	if ok, _ := s.c.Extension("8BITMIME"); !ok || strings.EqualFold(d.Body, "7BIT") {
		return ""
	}
	return " BODY=8BITMIME"
}

// mail sends MAIL for d. A 7-bit message to a server offering 8BITMIME
// sends the command itself (go-smtp would add BODY=8BITMIME); anything
// else goes through go-smtp's Client as before. Errors are as from
// smtp.Client.Mail: an *smtp.SMTPError for a reply, anything else for the
// connection.
func (s *session) mail(d *envelope.Delivery, opts *smtp.MailOptions) error {
	if ok, _ := s.c.Extension("8BITMIME"); !ok || bodyParam(s, d) != "" {
		return s.c.Mail(d.From, opts)
	}
	line, err := mailLine(s, d.From, opts)
	if err != nil {
		return err
	}
	r, err := s.wireConn().Cmd(line)
	if err != nil {
		return err
	}
	if r.Code/100 != 2 {
		return r.SMTPError()
	}
	return nil
}

// mailLine builds "MAIL FROM:<from> ..." without BODY, with the parameters
// of opts the server offers (RFC 1870 SIZE, RFC 6531 SMTPUTF8, RFC 3461 RET
// and ENVID), as go-smtp's Client would; without the CRLF.
func mailLine(s *session, from string, opts *smtp.MailOptions) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "MAIL FROM:<%s>", from)
	if ok, _ := s.c.Extension("SIZE"); ok && opts.Size > 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(opts.Size, 10))
	}
	if opts.UTF8 {
		b.WriteString(" SMTPUTF8") // mailOptions sets it only when offered
	}
	if ok, _ := s.c.Extension("DSN"); ok {
		if opts.Return != "" {
			b.WriteString(" RET=" + string(opts.Return))
		}
		if opts.EnvelopeID != "" {
			if !printableASCII(opts.EnvelopeID) {
				return "", fmt.Errorf("upstream: malformed ENVID %q", opts.EnvelopeID)
			}
			b.WriteString(" ENVID=" + xtext(opts.EnvelopeID))
		}
	}
	return b.String(), nil
}

// xtext encodes s as RFC 3461 §4 xtext: printable ASCII but '+' and '='
// as is, everything else as "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// Values of Client.eightBit.
const (
	eightBitUnknown int32 = iota
	eightBitOffered
	eightBitNotOffered
)

// note8Bit records whether the smarthost offered 8BITMIME in the EHLO of
// the session about to send mail.
func (c *Client) note8Bit(s *session) {
	v := eightBitNotOffered
	if ok, _ := s.c.Extension("8BITMIME"); ok {
		v = eightBitOffered
	}
	c.eightBit.Store(v)
}

// SevenBitOnly reports that the smarthost, when last asked, did not offer
// 8BITMIME (RFC 6152): the intake then downgrades 8-bit parts to
// quoted-printable before signing. False until a first transaction.
func (c *Client) SevenBitOnly() bool { return c.eightBit.Load() == eightBitNotOffered }
