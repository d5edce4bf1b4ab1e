// Package maillog writes the mail log: one greppable line per message event,
// with a fixed vocabulary of statuses, separate from debug logging.
//
// Every line carries msg="mail" and status=, plus the fields that apply:
// id= from= to= relay= delay= dsn= reply=. Secrets never reach this package.
package maillog

import (
	"context"
	"log/slog"
	"time"
)

// Status is the fixed vocabulary of message events.
type Status string

const (
	Queued   Status = "queued"   // accepted and durable
	Rejected Status = "rejected" // refused at intake
	Sent     Status = "sent"     // a recipient was accepted by the smarthost
	Deferred Status = "deferred" // temporary failure, will retry
	Failed   Status = "failed"   // permanent failure for a recipient
	Expired  Status = "expired"  // gave up after queue.max_age
	Held     Status = "held"     // no smarthost, or held by the admin
	Bounced  Status = "bounced"  // a notice was generated for the sender
	Deleted  Status = "deleted"  // removed by the admin
)

// Event is one mail log line. Zero fields are left out.
type Event struct {
	ID     string
	From   string
	To     string // one recipient, or a comma-separated list
	Relay  string
	Status Status
	Delay  time.Duration
	DSN    string // enhanced status code, e.g. "5.1.1"
	Reply  string // the peer's reply or our reason, single line
	Size   int64
	Extra  []slog.Attr
}

// Log writes e to l at info level (warn for deferred, failed, expired, rejected).
func Log(l *slog.Logger, e Event) {
	if l == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 10+len(e.Extra))
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("id", e.ID)
	if e.From != "" || e.Status == Queued {
		attrs = append(attrs, slog.String("from", "<"+e.From+">"))
	}
	add("to", e.To)
	add("relay", e.Relay)
	attrs = append(attrs, slog.String("status", string(e.Status)))
	if e.Delay > 0 {
		attrs = append(attrs, slog.String("delay", e.Delay.Round(time.Millisecond).String()))
	}
	add("dsn", e.DSN)
	add("reply", e.Reply)
	if e.Size > 0 {
		attrs = append(attrs, slog.Int64("size", e.Size))
	}
	attrs = append(attrs, e.Extra...)
	level := slog.LevelInfo
	switch e.Status {
	case Deferred, Failed, Expired, Rejected:
		level = slog.LevelWarn
	}
	l.LogAttrs(context.Background(), level, "mail", attrs...)
}
