package upstream

import (
	"strings"

	"github.com/emersion/go-smtp"
)

// A smarthost that throttles relayd ("451 4.7.1 rate limited", "450 too
// many messages, slow down") says nothing about the message: every other
// message would get the same answer. Such a reply is turned into a session
// *Error, so the queue defers the whole delivery and backs off from the
// smarthost as it does after a connection failure, instead of trying every
// queued message in a row. (421 always is session-level: RFC 5321 §3.8.)

// throttlePhrases are lower-case fragments of the texts smarthosts use for
// rate limits (Postfix anvil, Exim ratelimit ACLs, Microsoft 365, Gmail,
// Amazon SES, ISPs).
var throttlePhrases = []string{
	"rate limit", "ratelimit", "rate-limit", "rate exceeded", "unusual rate",
	"too many messages", "too many mails", "too many emails", "too much mail",
	"too many connections", "too many sessions", "throttl", "slow down",
	"sending limit", "send limit", "message limit", "maximum sending rate",
}

// throttled reports whether se, a 4xx reply, is the smarthost rate
// limiting relayd. A recipient's own temporary trouble is not: mailbox
// status (X.2.X: over quota, mailbox busy) and too many recipients (X.5.3,
// which splitting the envelope answers).
func throttled(se *smtp.SMTPError) bool {
	if se == nil || se.Code/100 != 4 {
		return false
	}
	ec := se.EnhancedCode
	if ec[0] == 4 && (ec[1] == 2 || ec[1] == 5 && ec[2] == 3) {
		return false
	}
	if ec == (smtp.EnhancedCode{4, 7, 28}) { // Gmail: unusual rate of mail
		return true
	}
	text := strings.ToLower(se.Message)
	if strings.Contains(text, "recipients") {
		return false // "too many recipients": split, not throttled
	}
	for _, p := range throttlePhrases {
		if strings.Contains(text, p) {
			return true
		}
	}
	return false
}

// throttleError is the session *Error for a throttling reply at stage; the
// connection is not reused.
func throttleError(s *session, stage Stage, se *smtp.SMTPError) *Error {
	s.dead = true
	e := sessionError(stage, s.addr, se)
	e.Hint = "the smarthost is rate limiting relayd: all mail waits and the smarthost is retried after a backoff, as after a connection failure"
	return e
}
