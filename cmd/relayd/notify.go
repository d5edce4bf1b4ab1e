package main

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

	"relayd/cleanup"
	"relayd/dsn"
	"relayd/maillog"
	"relayd/queue"
	"relayd/upstream"
)

// notifier turns the queue's notice requests into messages: dsn composes,
// cleanup takes them in like any other message (null sender, DKIM-signed
// when a key matches, durable before Notify returns).
type notifier struct {
	intake   *cleanup.Cleanup // also the source of rewrite.admin, kept current by reloads
	hostname string
	clock    func() time.Time
	log      *slog.Logger
	// nullSender returns upstream.null_sender as currently configured
	// (nil: none).
	nullSender func() string
}

var errNoticeDone = errors.New("notice submission finished")

func (n *notifier) Notify(ctx context.Context, no queue.Notice) error {
	to, origin := n.recipient(no)
	if to == "" {
		maillog.Log(n.log, maillog.Event{ID: no.ID, From: no.From, Status: maillog.Failed,
			Reply: "notice dropped: no rewrite.admin to send it to"})
		return nil
	}
	now := n.clock()
	b := make([]byte, 12)
	rand.Read(b)
	token := hex.EncodeToString(b)
	params := dsn.Params{
		Hostname:  n.hostname,
		Now:       now,
		MessageID: fmt.Sprintf("<%s.dsn.%s@%s>", no.ID, token, n.hostname),
		Boundary:  noticeBoundary(no.ID, token),
		To:        to,
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(dsn.Compose(dsnNotice(no), params, pw)) }()
	sub := &cleanup.Submission{
		Envelope: queue.Envelope{Rcpts: []queue.Recipient{{Addr: to, State: queue.Pending}}},
		Origin:   origin,
		LocalUID: -1,
	}
	if origin == queue.FromAdminNotice && no.IsNotice && n.noNullSender() && strings.Contains(lastReply(no), upstream.NullSenderRefused) {
		// The smarthost refused the notice's null sender <> (Amazon SES)
		// and upstream.null_sender is not set: it would refuse the
		// admin's copy too, so that goes from the admin's own address.
		// It cannot loop: the queue never bounces an admin notice,
		// whatever its sender.
		sub.Envelope.From = to
		n.log.Warn("the smarthost refuses the null sender <>: a notice could not be delivered, its copy goes to rewrite.admin from the admin's own address (set upstream.null_sender to an address the smarthost accepts for notices)",
			"id", no.ID, "admin", to, "reply", lastReply(no))
	}
	id, err := n.intake.Submit(ctx, sub, pr)
	pr.CloseWithError(errNoticeDone) // unblocks the composer if Submit stopped early
	if err != nil {
		return fmt.Errorf("queue %s notice for %s: %w", no.Kind, no.ID, err)
	}
	maillog.Log(n.log, maillog.Event{ID: no.ID, To: to, Status: maillog.Bounced,
		Extra: []slog.Attr{slog.String("notice", string(no.Kind)), slog.String("notice_id", id)}})
	return nil
}

// dsnNotice is the composer's input for the queue's request no.
func dsnNotice(no queue.Notice) dsn.Notice {
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

func (n *notifier) noNullSender() bool { return n.nullSender == nil || n.nullSender() == "" }

// lastReply is the first recorded reply among the notice's recipients.
func lastReply(no queue.Notice) string {
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
func (n *notifier) recipient(no queue.Notice) (string, queue.Origin) {
	to, admin := "", n.intake.Admin()
	// A sender rewritten from a local one is rewrite.sender, a no-reply
	// address: the notice goes to the admin (issue 18).
	if !no.IsNotice && !no.LocalSender {
		if mapped, err := n.intake.Recipient(no.From); err == nil && cleanup.Domain(mapped) != "" {
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
		return to, queue.FromAdminNotice
	}
	return to, queue.FromNotice
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
