package metrics

import (
	"context"

	"relayd/queue"
)

// Failure classes returned by a Deliverer's classify function.
const (
	FailConnection = "connection" // connect, greeting, EHLO, STARTTLS, TLS
	FailAuth       = "auth"
)

// Deliverer wraps d to time each hand-off and count smarthost connection
// and AUTH failures. classify maps a Deliver error to FailConnection,
// FailAuth, or "" (another session failure, not counted there); it keeps
// this package independent of the upstream package's error type.
func (m *Metrics) Deliverer(d queue.Deliverer, classify func(error) string) queue.Deliverer {
	if d == nil {
		return nil
	}
	return &deliverer{m: m, next: d, classify: classify}
}

type deliverer struct {
	m        *Metrics
	next     queue.Deliverer
	classify func(error) string
}

func (w *deliverer) Deliver(ctx context.Context, d *queue.Delivery) (queue.Outcome, error) {
	start := w.m.clock()
	out, err := w.next.Deliver(ctx, d)
	result := "ok"
	if err != nil {
		result = "error"
		switch w.classify(err) {
		case FailConnection:
			w.m.connFail.Inc()
		case FailAuth:
			w.m.authFail.Inc()
		}
	}
	w.m.attempt.WithLabelValues(result).Observe(w.m.clock().Sub(start).Seconds())
	return out, err
}
