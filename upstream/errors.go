package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"

	"github.com/emersion/go-smtp"

	"relayd/internal/reply"
)

// Stage names the step of the SMTP session that failed.
type Stage string

// Stages of a session, in order.
const (
	StageConfig   Stage = "config"
	StageConnect  Stage = "connect"
	StageGreeting Stage = "greeting"
	StageEHLO     Stage = "ehlo"
	StageSTARTTLS Stage = "starttls"
	StageTLS      Stage = "tls"
	StageAuth     Stage = "auth"
	StageReset    Stage = "rset"
	StageMail     Stage = "mail"
	StageRcpt     Stage = "rcpt"
	StageData     Stage = "data"
	StageQuit     Stage = "quit"
)

// Error is a session-level failure talking to one relay. Every Error defers
// the whole delivery; none is a reason to fail a recipient.
type Error struct {
	Stage Stage
	Addr  string // the configured host:port
	// Temporary is false when the failure needs the admin (certificate
	// rejected, no STARTTLS, no usable AUTH, ...); true when it may clear by
	// itself (network, timeouts, 4xx, 421, AUTH 535).
	Temporary bool
	// Code, Enhanced and Message are set when the server replied.
	Code     int
	Enhanced smtp.EnhancedCode
	Message  string
	// Hint is a one-line diagnosis with the fix, for logs and `relayd check`.
	Hint string
	Err  error

	kind        Kind   // set where the cause is known by construction; see Kind
	oauthStatus string // see OAuthStatus
	fix         string // see Fix

	// staleToken: an OAuth2 token the source had not just issued was
	// refused; the source drops it and fetches another, so the refusal
	// says nothing yet about the credentials (sasl.go, authgate.go).
	staleToken bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s: %s: ", e.Addr, e.Stage)
	switch {
	case e.Code != 0:
		// The reply as the server gave it: no X.0.0 made up for one
		// without an enhanced code.
		b.WriteString(reply.Peer(e.Code, e.Enhanced, e.Message))
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("failed")
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a deadline.
func (e *Error) Timeout() bool { return isTimeout(e.Err) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// OAuthStatus is the "status" of the smarthost's RFC 7628 §3.2.2 error
// challenge when it refused an OAuth2 token, "" otherwise.
func (e *Error) OAuthStatus() string { return e.oauthStatus }

// Fix is the action the failure asks for: Hint without the diagnosis
// that may lead it, for relayd check's "Fix:" column.
func (e *Error) Fix() string {
	if e.fix != "" {
		return e.fix
	}
	return e.Hint
}

// Reply returns the server's reply as an SMTPError, or nil.
func (e *Error) Reply() *smtp.SMTPError {
	if e.Code == 0 {
		return nil
	}
	return &smtp.SMTPError{Code: e.Code, EnhancedCode: e.Enhanced, Message: e.Message}
}

// sessionError builds an *Error for err at stage, with the kind's hint.
func sessionError(stage Stage, addr string, err error) *Error {
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	e := &Error{Stage: stage, Addr: addr, Temporary: true, Err: err}
	var se *smtp.SMTPError
	var pe *textproto.Error
	if errors.As(err, &pe) {
		se = replyError(pe.Code, pe.Msg)
	}
	if se != nil || errors.As(err, &se) {
		e.Code, e.Enhanced, e.Message = se.Code, se.EnhancedCode, se.Message
		if se.Code == 421 {
			e.Hint = "the smarthost is closing the connection (RFC 5321 §3.8): will retry"
		}
	}
	k := e.Kind()
	if k.Permanent() {
		e.Temporary = false
	}
	if h := k.hint(addr); h != "" {
		e.Hint = h
	}
	return e
}

// replyError converts a reply line to an SMTPError, splitting off the RFC
// 3463 enhanced status code when present (and its repetitions at the start
// of a multi-line reply's further lines, RFC 2034 §4).
func replyError(code int, msg string) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: code, Message: msg}
	first, rest, ok := strings.Cut(msg, " ")
	if !ok {
		return se
	}
	ec, ok := reply.ParseEnhanced(first)
	if !ok {
		return se
	}
	se.EnhancedCode = ec
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}
