package metrics

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"relayd/maillog"
	"relayd/token"
)

// LogHandler wraps h: every mail log record (msg="mail") is counted, then
// passed on if h takes its level. Records below h's level are still
// counted when they are mail events (info), so a quiet log level does not
// blind the metrics.
func (m *Metrics) LogHandler(h slog.Handler) slog.Handler { return &logHandler{m: m, next: h} }

type logHandler struct {
	m    *Metrics
	next slog.Handler
}

func (l *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo || l.next.Enabled(ctx, level)
}

func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "mail":
		l.m.count(r)
	case token.LogRefresh:
		l.m.countRefresh(r)
	}
	if !l.next.Enabled(ctx, r.Level) {
		return nil
	}
	return l.next.Handle(ctx, r)
}

func (l *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{m: l.m, next: l.next.WithAttrs(as)}
}

func (l *logHandler) WithGroup(name string) slog.Handler {
	// Mail events are never logged inside a group; counting stops here so
	// a grouped "status" attribute cannot be mistaken for one.
	return l.next.WithGroup(name)
}

// count turns one mail log record into counter updates.
func (m *Metrics) count(r slog.Record) {
	var status, dsn, reply, delay, notice string
	noticeID := false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "status":
			status = a.Value.String()
		case "dsn":
			dsn = a.Value.String()
		case "reply":
			reply = a.Value.String()
		case "delay":
			delay = a.Value.String()
		case "notice":
			notice = a.Value.String()
		case "notice_id":
			noticeID = true
		}
		return true
	})
	switch maillog.Status(status) {
	case maillog.Queued:
		m.accepted.Inc()
	case maillog.Rejected:
		m.rejected.WithLabelValues(Reason(dsn, reply)).Inc()
	case maillog.Sent:
		m.rcpts.WithLabelValues(status).Inc()
		d, err := time.ParseDuration(delay)
		if delay == "" || err != nil {
			d = 0
		}
		m.delay.Observe(d.Seconds())
	case maillog.Deferred, maillog.Failed, maillog.Expired:
		m.rcpts.WithLabelValues(status).Inc()
	case maillog.Bounced:
		if noticeID {
			return
		}
		switch notice {
		case "failed", "delayed", "relayed":
		default:
			notice = "other"
		}
		m.bounces.WithLabelValues(notice).Inc()
	}
}

// Reason maps a rejection's enhanced status code (RFC 3463) and reply to
// one of the fixed reason labels.
func Reason(dsn, reply string) string {
	_, sub, _ := strings.Cut(dsn, ".")
	switch {
	case dsn == "":
		return ReasonOther
	case sub == "7.1" && strings.Contains(strings.ToLower(reply), "relay"):
		return ReasonRelayDenied
	case sub == "7.0" || sub == "7.8" || sub == "7.9":
		return ReasonAuth
	case strings.HasPrefix(sub, "7."):
		return ReasonPolicy
	case sub == "3.4" || sub == "2.3":
		return ReasonSize
	case strings.HasPrefix(sub, "3.") || sub == "2.2" || strings.HasPrefix(sub, "4."):
		return ReasonResources
	case strings.HasPrefix(sub, "5.") || strings.HasPrefix(sub, "6.") || strings.HasPrefix(sub, "1."):
		return ReasonSyntax
	}
	return ReasonOther
}
