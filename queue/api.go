package queue

// This file is the queue's public contract: the two interfaces it consumes
// (Deliverer, Notifier), implemented by upstream (Deliverer) and the
// notifier (package notify, via dsn + cleanup). The types it stores and
// hands out live in the leaf package envelope, so the stages that only
// speak them need not import the spool; the aliases below keep queue.X and
// envelope.X one type.

import (
	"context"

	"relayd/envelope"
)

type (
	Envelope   = envelope.Envelope
	Recipient  = envelope.Recipient
	RcptState  = envelope.RcptState
	Delivery   = envelope.Delivery
	Outcome    = envelope.Outcome
	NoticeKind = envelope.NoticeKind
	Notice     = envelope.Notice
	Origin     = envelope.Origin
)

const (
	Pending = envelope.Pending
	Sent    = envelope.Sent
	Failed  = envelope.Failed

	NoticeFailed  = envelope.NoticeFailed
	NoticeDelayed = envelope.NoticeDelayed
	NoticeRelayed = envelope.NoticeRelayed

	FromSMTP        = envelope.FromSMTP
	FromLocal       = envelope.FromLocal
	FromNotice      = envelope.FromNotice
	FromAdminNotice = envelope.FromAdminNotice
)

// Deliverer hands a message to the next hop. A non-nil error is a
// transport-level failure (connect, TLS, AUTH, 421, timeout): every recipient
// is deferred, no recipient ever fails because of it, and the queue treats the
// transport (that smarthost, with Routes) as down until a later attempt
// succeeds.
type Deliverer interface {
	Deliver(ctx context.Context, d *Delivery) (Outcome, error)
}

// Notifier turns a Notice into a queued message. A nil error means the notice
// is durable; an error makes the queue ask again later.
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}
