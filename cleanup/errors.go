package cleanup

import (
	"errors"
	"syscall"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
)

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// Content rejections (5xx: resending the same bytes never helps).
var (
	ErrBareCR = smtpErr(550, smtp.EnhancedCode{5, 6, 0},
		"Message contains a bare CR (RFC 5322 section 2.3); send CRLF line endings")
	ErrNUL = smtpErr(550, smtp.EnhancedCode{5, 6, 0},
		"Message contains a NUL byte (RFC 5322 section 2.3)")
	ErrHeaderTooLarge = smtpErr(552, smtp.EnhancedCode{5, 3, 4},
		"Message header too large")
	ErrLoop = smtpErr(554, smtp.EnhancedCode{5, 4, 6},
		"Too many Received headers: mail forwarding loop (RFC 5321 section 6.3)")
	ErrTooBig = smtpErr(552, smtp.EnhancedCode{5, 3, 4},
		"Maximum message size exceeded")
	ErrLineTooLong = smtpErr(550, smtp.EnhancedCode{5, 6, 0},
		"Line too long in a part whose encoding cannot be changed (RFC 5322 section 2.1.1: at most 998 octets per line; re-encode it as base64 or quoted-printable with shorter lines)")
	ErrFromDenied = smtpErr(553, smtp.EnhancedCode{5, 7, 1},
		"From header address not allowed for this user")
)

// Local failures (4xx: may succeed later).
var (
	ErrNoSpace = smtpErr(452, smtp.EnhancedCode{4, 3, 1},
		"Insufficient system storage, try again later")
	ErrIO = smtpErr(451, smtp.EnhancedCode{4, 3, 0},
		"Local error in processing, try again later")
	ErrSign = smtpErr(451, smtp.EnhancedCode{4, 3, 0},
		"DKIM signing failed, try again later")
)

// storageError maps a spool error to its SMTP reply: disk full is 452 4.3.1,
// anything else 451 4.3.0.
func storageError(err error) *smtp.SMTPError {
	if errors.Is(err, envelope.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrNoSpace
	}
	return ErrIO
}
