package smtptest

import (
	"time"

	"github.com/emersion/go-smtp"
)

// Faults script failures. The zero value scripts none. A nil hook, or a hook
// returning nil, means "accept".
type Faults struct {
	// Greeting421 answers every new connection with a 421 greeting and
	// closes it.
	Greeting421 bool
	// MailReply is consulted at MAIL FROM.
	MailReply func(from string) *smtp.SMTPError
	// RcptReply is consulted at each RCPT TO, e.g. 550 5.1.1 for one address.
	RcptReply func(rcpt string) *smtp.SMTPError
	// DataReply is consulted after the body was read; n is the 1-based
	// number of the DATA transaction on this server (to script "451, then 250").
	DataReply func(n int) *smtp.SMTPError
	// MessageReply is consulted after DataReply with the message as it
	// would be recorded (envelope, DSN parameters and data), e.g. to refuse
	// mail from one sender but accept notices from the null sender <>.
	MessageReply func(m *Message) *smtp.SMTPError
	// AuthFail answers every AUTH with 535 5.7.8.
	AuthFail bool
	// TLSFail presents a certificate for "wrong.invalid" (signed by the same
	// CA), so a verifying client fails the handshake.
	TLSFail bool
	// DropMidData closes the connection after reading part of the message
	// body, with no reply.
	DropMidData bool
	// Stall sleeps this long after the body before replying (a tarpit).
	Stall time.Duration
	// FailFirst answers the first N transactions with 451 4.3.0 after the
	// body (counted over the server's life), then accepts.
	FailFirst int
}

// Reply550 returns "550 5.1.1 no such user".
func Reply550() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "smtptest: no such user"}
}

// Reply451 returns "451 4.3.0 try again later".
func Reply451() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "smtptest: try again later"}
}
