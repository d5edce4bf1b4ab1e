package main

import (
	"context"
	"log/slog"
	"slices"
)

// Log components: every line the daemon writes carries component=<name>,
// added once where a package's logger is built (here, in the wiring),
// never per call. The name is the package's, except oauth2 (the token
// package, named for what admins look for) and relayd (this wiring).
const (
	compRelayd   = "relayd"
	compSmtpd    = "smtpd"
	compCleanup  = "cleanup"
	compSigner   = "signer"
	compQueue    = "queue"
	compUpstream = "upstream"
	compOAuth2   = "oauth2"
	compNotify   = "notify"
	compPickup   = "pickup"
	compControl  = "control"
	compMetrics  = "metrics"
)

// component returns root's logger for one package.
func component(root *slog.Logger, name string) *slog.Logger {
	return root.With("component", name)
}

// trailingAttrs is a handler that writes the attributes given to With
// after each record's own, so "component=queue" ends a mail log line and
// the documented "msg=mail id=... from=... to=... status=..." prefix that
// admins and scripts grep (README, bench/soak.sh) stays as it is.
type trailingAttrs struct {
	next  slog.Handler
	attrs []slog.Attr
}

func withTrailingAttrs(h slog.Handler) slog.Handler { return &trailingAttrs{next: h} }

func (h *trailingAttrs) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *trailingAttrs) Handle(ctx context.Context, r slog.Record) error {
	if len(h.attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(h.attrs...)
	}
	return h.next.Handle(ctx, r)
}

func (h *trailingAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &trailingAttrs{next: h.next, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup hands the attributes so far to next first: they belong
// outside the group.
func (h *trailingAttrs) WithGroup(name string) slog.Handler {
	next := h.next
	if len(h.attrs) > 0 {
		next = next.WithAttrs(h.attrs)
	}
	return &trailingAttrs{next: next.WithGroup(name)}
}
