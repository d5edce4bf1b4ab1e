package queue

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"relayd/maillog"
)

// notices generates the notices m is owed and marks them done in m (the
// caller persists m). It reports whether a notice is still outstanding
// because the Notifier failed; it is asked again on a later pass.
func (q *Queue) notices(ctx context.Context, m *Meta, now time.Time) (outstanding bool) {
	// Failed recipients: RFC 3461 section 4.1, NOTIFY=FAILURE (the default).
	if failed := indexes(m, func(r Recipient) bool { return r.State == Failed && !r.Notified }); len(failed) > 0 {
		var about []int
		isNotice := false
		switch {
		case m.Origin == FromAdminNotice:
			// Checked first: an admin notice may carry the admin's own
			// address as sender (no upstream.null_sender) and must still
			// never be bounced, or it would loop.
			q.log.Error("queue: a failed notice to the admin failed too, dropped",
				"id", m.ID, "to", addrs(m, failed))
		case m.From != "":
			about = filterNotify(m, failed, "FAILURE")
		case m.Origin == FromNotice:
			// A notice failed: the Notifier sends this to the admin.
			about, isNotice = failed, true
		}
		// Never bounce the null sender (RFC 5321 section 4.5.5).
		if q.sendNotice(ctx, m, NoticeFailed, about, isNotice, now) {
			for _, i := range failed {
				m.Rcpts[i].Notified = true
			}
		} else {
			outstanding = true
		}
	}
	// Relayed: NOTIFY=SUCCESS that the smarthost did not take over.
	if sent := indexes(m, func(r Recipient) bool { return r.State == Sent && !r.Notified }); len(sent) > 0 {
		var about []int
		if m.From != "" {
			about = filterNotify(m, sent, "SUCCESS")
		}
		if q.sendNotice(ctx, m, NoticeRelayed, about, false, now) {
			for _, i := range sent {
				m.Rcpts[i].Notified = true
			}
		} else {
			outstanding = true
		}
	}
	// Delayed: once per message, at the first pass after DelayWarning.
	if q.cfg.DelayWarning > 0 && !m.DelayNotified && hasPending(m) &&
		!now.Before(m.Arrival.Add(q.cfg.DelayWarning)) {
		var about []int
		if m.From != "" {
			about = filterNotify(m, indexes(m, func(r Recipient) bool { return r.State == Pending }), "DELAY")
		}
		if q.sendNotice(ctx, m, NoticeDelayed, about, false, now) {
			m.DelayNotified = true
		} else {
			outstanding = true
		}
	}
	return outstanding
}

// sendNotice asks the Notifier for one notice about the recipients at
// indexes about. It reports whether the notice is done: nothing to say,
// no Notifier (logged), or the Notifier accepted it.
func (q *Queue) sendNotice(ctx context.Context, m *Meta, kind NoticeKind, about []int, isNotice bool, now time.Time) bool {
	if len(about) == 0 {
		return true
	}
	if q.notifier == nil {
		q.log.Info("queue: no notifier, notice not generated", "id", m.ID, "kind", string(kind),
			"to", addrs(m, about))
		return true
	}
	n := Notice{
		Kind: kind, ID: m.ID, From: m.From, Arrival: m.Arrival, EnvID: m.EnvID, Ret: m.Ret,
		RemoteMTA: m.RemoteMTA, LastAttempt: m.LastAttempt, Open: q.opener(m), Size: m.Size,
		IsNotice: isNotice, LocalSender: m.LocalSender,
	}
	if kind == NoticeDelayed {
		n.WillRetryUntil = m.Arrival.Add(q.cfg.MaxAge)
	}
	for _, i := range about {
		n.Rcpts = append(n.Rcpts, m.Rcpts[i])
	}
	if err := q.notifier.Notify(ctx, n); err != nil {
		q.log.Error("queue: notice failed, will retry", "id", m.ID, "kind", string(kind), "err", err)
		return false
	}
	maillog.Log(q.log, maillog.Event{ID: m.ID, From: m.From, To: addrs(m, about), Status: maillog.Bounced,
		Extra: []slog.Attr{slog.String("notice", string(kind))}})
	return true
}

func indexes(m *Meta, keep func(Recipient) bool) []int {
	var idx []int
	for i, r := range m.Rcpts {
		if keep(r) {
			idx = append(idx, i)
		}
	}
	return idx
}

// filterNotify keeps the recipients whose RFC 3461 NOTIFY asks for kind;
// an empty NOTIFY means FAILURE,DELAY (section 4.1).
func filterNotify(m *Meta, idx []int, kind string) []int {
	var out []int
	for _, i := range idx {
		if wantsNotify(m.Rcpts[i].Notify, kind) {
			out = append(out, i)
		}
	}
	return out
}

func wantsNotify(notify []string, kind string) bool {
	if len(notify) == 0 {
		return kind == "FAILURE" || kind == "DELAY"
	}
	for _, n := range notify {
		if strings.EqualFold(n, kind) {
			return true
		}
	}
	return false
}

func addrs(m *Meta, idx []int) string {
	a := make([]string, len(idx))
	for k, i := range idx {
		a[k] = m.Rcpts[i].Addr
	}
	return strings.Join(a, ",")
}
