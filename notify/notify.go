// Package notify is the notifier: it turns the queue's notice requests
// (envelope.Notice) into messages. dsn composes them, and cleanup takes them
// in like any other message: null sender, DKIM-signed when a key matches,
// durable before Notify returns. It decides where a notice goes (the
// sender, or rewrite.admin) and with which origin, so a failed notice is
// never bounced again.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/cleanup"
	"relayd/dsn"
	"relayd/envelope"
	"relayd/maillog"
	"relayd/upstream"
)

// Intake is what the notifier needs of the intake (*cleanup.Cleanup).
type Intake interface {
	Submit(ctx context.Context, sub *cleanup.Submission, r io.Reader) (string, error)
	Recipient(addr string) (string, *smtp.SMTPError)
	Admin() string // rewrite.admin, "" when unset
}

// Notifier implements the queue's Notifier. Set Intake before the queue
// first asks for a notice (the wiring opens the queue, then builds the
// intake on it).
type Notifier struct {
	Intake   Intake // also the source of rewrite.admin, kept current by reloads
	Hostname string
	Clock    func() time.Time // nil: time.Now
	Logger   *slog.Logger     // nil: discard
	// NullSender returns upstream.null_sender as currently configured
	// (nil: none).
	NullSender func() string
}

var errNoticeDone = errors.New("notice submission finished")

// Notify queues the notice no asks for. A nil error means it is durable
// (or was dropped, with a log line, for want of anyone to send it to).
func (n *Notifier) Notify(ctx context.Context, no envelope.Notice) error {
	to, origin := n.recipient(no)
	if to == "" {
		maillog.Log(n.logger(), maillog.Event{ID: no.ID, From: no.From, Status: maillog.Failed,
			Reply: "notice dropped: no rewrite.admin to send it to"})
		return nil
	}
	now := time.Now()
	if n.Clock != nil {
		now = n.Clock()
	}
	b := make([]byte, 12)
	rand.Read(b)
	token := hex.EncodeToString(b)
	params := dsn.Params{
		Hostname:  n.Hostname,
		Now:       now,
		MessageID: fmt.Sprintf("<%s.dsn.%s@%s>", no.ID, token, n.Hostname),
		Boundary:  noticeBoundary(no.ID, token),
		To:        to,
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(dsn.Compose(dsnNotice(no), params, pw)) }()
	sub := &cleanup.Submission{
		Envelope: envelope.Envelope{Rcpts: []envelope.Recipient{{Addr: to, State: envelope.Pending}}},
		Origin:   origin,
		LocalUID: -1,
	}
	if origin == envelope.FromAdminNotice && no.IsNotice && n.noNullSender() && strings.Contains(lastReply(no), upstream.NullSenderRefused) {
		// The smarthost refused the notice's null sender <> (Amazon SES)
		// and upstream.null_sender is not set: it would refuse the
		// admin's copy too, so that goes from the admin's own address.
		// It cannot loop: the queue never bounces an admin notice,
		// whatever its sender.
		sub.Envelope.From = to
		n.logger().Warn("the smarthost refuses the null sender <>: a notice could not be delivered, its copy goes to rewrite.admin from the admin's own address (set upstream.null_sender to an address the smarthost accepts for notices)",
			"id", no.ID, "admin", to, "reply", lastReply(no))
	}
	id, err := n.Intake.Submit(ctx, sub, pr)
	pr.CloseWithError(errNoticeDone) // unblocks the composer if Submit stopped early
	if err != nil {
		return fmt.Errorf("queue %s notice for %s: %w", no.Kind, no.ID, err)
	}
	maillog.Log(n.logger(), maillog.Event{ID: no.ID, To: to, Status: maillog.Bounced,
		Extra: []slog.Attr{slog.String("notice", string(no.Kind)), slog.String("notice_id", id)}})
	return nil
}

// dsnNotice is the composer's input for the queue's request no.
func dsnNotice(no envelope.Notice) dsn.Notice {
	rcpts := make([]dsn.Recipient, len(no.Rcpts))
	for i := range no.Rcpts {
		r := &no.Rcpts[i]
		rcpts[i] = dsn.Recipient{Addr: r.Addr, ORcpt: r.ORcpt, Reply: r.Last()}
	}
	return dsn.Notice{
		Kind: dsn.Kind(no.Kind), ID: no.ID, From: no.From, Arrival: no.Arrival,
		EnvID: no.EnvID, Ret: no.Ret, Rcpts: rcpts, RemoteMTA: no.RemoteMTA,
		LastAttempt: no.LastAttempt, WillRetryUntil: no.WillRetryUntil,
		Open: no.Open, Size: no.Size, IsNotice: no.IsNotice,
	}
}

func (n *Notifier) logger() *slog.Logger {
	if n.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Logger
}

func (n *Notifier) noNullSender() bool { return n.NullSender == nil || n.NullSender() == "" }

// lastReply is the first recorded reply among the notice's recipients.
func lastReply(no envelope.Notice) string {
	for _, r := range no.Rcpts {
		if r.LastReply != "" {
			return r.LastReply
		}
	}
	return ""
}

// recipient decides where a notice goes and with which origin; "" means
// nowhere (log and drop). Issue 4 loop rules: a failed notice goes to
// rewrite.admin; a notice never goes to a local name (root, or anything at
// this host's own name, which the smarthost cannot deliver back to us): the
// intake maps such an address to rewrite.admin as it does for recipients.
// A notice about mail whose sender stands in for a local one
// (Envelope.LocalSender) goes to rewrite.admin too.
// Whatever is addressed to the admin carries FromAdminNotice, so if it fails
// it is logged and dropped instead of going to the admin again.
func (n *Notifier) recipient(no envelope.Notice) (string, envelope.Origin) {
	to, admin := "", n.Intake.Admin()
	// A sender rewritten from a local one is rewrite.sender, a no-reply
	// address: the notice goes to the admin (issue 18).
	if !no.IsNotice && !no.LocalSender {
		if mapped, err := n.Intake.Recipient(no.From); err == nil && cleanup.Domain(mapped) != "" {
			to = mapped
		}
	}
	if to == "" {
		to = admin
	}
	if to == "" {
		return "", ""
	}
	if admin != "" && strings.EqualFold(to, admin) {
		return to, envelope.FromAdminNotice
	}
	return to, envelope.FromNotice
}

// noticeBoundary is the notice's MIME boundary: the notice ID and the
// random token, cut to RFC 2046 §5.1.1's 70 characters. A maildrop notice's
// ID ("maildrop-" and a 48-character file name) is too long on its own:
// uncut, every maildrop failure notice was refused and the file retried
// on every scan.
func noticeBoundary(id, token string) string {
	if max := 70 - 1 - len(token); len(id) > max {
		id = id[:max]
	}
	return id + "/" + token
}
