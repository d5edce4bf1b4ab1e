// Package envelope holds the types every stage of the relay shares: the
// envelope of a message and its recipients' delivery state (persisted by the
// queue), one delivery attempt and its outcome (handed to and answered by
// upstream), the notice the queue asks for (composed by dsn), and where a
// message came from (cleanup's rules).
//
// It is a leaf: it imports no relayd package but internal/reply, so smtpd,
// cleanup, upstream, dsn and metrics speak the queue's vocabulary without
// importing the spool. The name is its job: these are the envelope and what
// happens to it, never the content (headers, body) of a message.
//
// The JSON tags are the queue's on-disk format (queue/doc.go): renaming
// one breaks every spool in service. queue re-exports every name here as an
// alias, so queue.Envelope and envelope.Envelope are one type.
package envelope

import (
	"errors"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/reply"
)

// ErrNoSpace is the spool's refusal of a new message for want of disk
// space (below queue.Config.MinFreeBytes, ENOSPC, EDQUOT): intake answers
// it with 452 4.3.1 instead of 451. It lives here so intake can test for it
// without importing the spool.
var ErrNoSpace = errors.New("queue: not enough disk space")

// Envelope is what the client said in MAIL and RCPT, plus the RFC 3461 DSN
// parameters. It is persisted with the message.
type Envelope struct {
	From  string      `json:"from"` // "" is the null sender <>
	Rcpts []Recipient `json:"rcpts"`
	Ret   string      `json:"ret,omitempty"`   // RFC 3461 RET: "FULL" | "HDRS" | ""
	EnvID string      `json:"envid,omitempty"` // RFC 3461 ENVID
	UTF8  bool        `json:"utf8,omitempty"`  // SMTPUTF8 was used
	// Body is the RFC 6152 body type ("7BIT", "8BITMIME", "BINARYMIME" or "").
	Body string `json:"body,omitempty"`
	// LocalSender: the sender is rewrite.sender, standing in for a local
	// one (root, cron, user@this-host), so nobody reads its notices; they go
	// to rewrite.admin instead. Absent in older entries: false.
	LocalSender bool `json:"local_sender,omitempty"`
	// FromDomain is the header From's domain as the message arrived, and
	// RouteSender the envelope sender before a smarthost's identity
	// replaced it (cleanup): routes match on them, at every attempt.
	// Absent in older entries: routes then see From and no header domain.
	FromDomain  string `json:"from_domain,omitempty"`
	RouteSender string `json:"route_sender,omitempty"`
}

// Recipient is one envelope recipient and its delivery state.
type Recipient struct {
	Addr   string   `json:"addr"`
	ORcpt  string   `json:"orcpt,omitempty"`  // RFC 3461 ORCPT, "type;addr"
	Notify []string `json:"notify,omitempty"` // RFC 3461 NOTIFY: NEVER | SUCCESS,FAILURE,DELAY

	State RcptState `json:"state"`
	// LastReply is the peer's last reply on one line, "451 4.3.0 text"
	// (Reply.String()), for people and for entries written before Reply.
	LastReply string `json:"last_reply,omitempty"`
	// Reply is the same reply as fields, so a reader (dsn) need not parse
	// LastReply back. Absent in older entries: see Last.
	Reply    reply.Reply `json:"reply,omitzero"`
	Updated  time.Time   `json:"updated,omitzero"`
	Notified bool        `json:"notified,omitempty"` // a final notice (failed/relayed) was generated
}

// SetReply records rp as the recipient's last reply, in both forms.
func (r *Recipient) SetReply(rp reply.Reply) {
	r.Reply, r.LastReply = rp, rp.String()
}

// Last is the recipient's last reply as fields: Reply, or for an entry
// written before Reply existed (or a Recipient built with LastReply
// only), LastReply parsed.
func (r *Recipient) Last() reply.Reply {
	if !r.Reply.IsZero() {
		return r.Reply
	}
	return reply.Parse(r.LastReply)
}

// RcptState is the per-recipient delivery state.
type RcptState string

const (
	Pending RcptState = "pending" // not yet attempted, or deferred (LastReply set)
	Sent    RcptState = "sent"
	Failed  RcptState = "failed"
)

// Delivery is one attempt handed to a Deliverer: the pending recipients of
// one message.
type Delivery struct {
	ID    string
	From  string
	Rcpts []Recipient // pending recipients only, in envelope order
	Ret   string
	EnvID string
	UTF8  bool
	Body  string
	Size  int64 // bytes that Open yields
	// Open returns the message as it goes on the wire: header prefix
	// (DKIM-Signature, Received, completed headers) followed by the body
	// file. It may be called more than once (e.g. to retry on a fallback).
	Open func() (io.ReadCloser, error)
}

// Outcome is a Deliverer's answer for one Delivery.
type Outcome struct {
	Relay string // "host[ip]:port" that answered, for logs and Remote-MTA
	// Rcpts has one entry per Delivery.Rcpts: nil means accepted (sent);
	// otherwise the reply, whose code decides: 5xx failed, 4xx deferred.
	// A 5xx at MAIL or DATA applies to every recipient of the delivery.
	Rcpts []*smtp.SMTPError
	// DSNPassed reports that the smarthost advertised DSN and the NOTIFY
	// parameters were passed on, so relayd sends no "relayed" notice.
	DSNPassed bool
}

// NoticeKind says which RFC 3464 notice the queue asks for.
type NoticeKind string

const (
	NoticeFailed  NoticeKind = "failed"
	NoticeDelayed NoticeKind = "delayed"
	NoticeRelayed NoticeKind = "relayed"
)

// Notice asks for one delivery status notification about one message.
type Notice struct {
	Kind           NoticeKind
	ID             string
	From           string // the envelope sender, who receives the notice ("" never reaches a Notifier)
	Arrival        time.Time
	EnvID          string
	Ret            string
	Rcpts          []Recipient // the recipients the notice is about, with LastReply
	RemoteMTA      string
	LastAttempt    time.Time
	WillRetryUntil time.Time // for delayed notices
	Open           func() (io.ReadCloser, error)
	Size           int64
	// IsNotice is true when the failed message was itself a notice (null
	// sender); a Notifier sends such failures to the admin, or drops them.
	IsNotice bool
	// LocalSender is the message's Envelope.LocalSender: From stands in for
	// a local sender and the notice goes to the admin.
	LocalSender bool
}

// Origin says where a message came from; it decides notice and loop rules.
type Origin string

const (
	FromSMTP   Origin = "smtp"   // the SMTP listener
	FromLocal  Origin = "local"  // the sendmail command (socket or maildrop)
	FromNotice Origin = "notice" // a DSN generated by relayd
	// FromAdminNotice is a failed notice re-sent to rewrite.admin; when it
	// fails too it is logged and dropped, never bounced again.
	FromAdminNotice Origin = "admin-notice"
)
