package metrics

import (
	"context"

	"relayd/envelope"
)

// Failure classes returned by a Deliverer's classify function.
const (
	FailConnection = "connection" // connect, greeting, EHLO, STARTTLS, TLS
	FailAuth       = "auth"
)

// A Deliverer hands a message to the next hop: the method set of
// Deliverer, declared here so the metrics need not import the spool
// (a value of either interface type is assignable to the other).
type Deliverer interface {
	Deliver(ctx context.Context, d *envelope.Delivery) (envelope.Outcome, error)
}

// Deliverer wraps d to time each hand-off and count smarthost connection
// and AUTH failures. classify maps a Deliver error to FailConnection,
// FailAuth, or "" (another session failure, not counted there); it keeps
// this package independent of the upstream package's error type.
func (m *Metrics) Deliverer(d Deliverer, classify func(error) string) Deliverer {
	return m.SmarthostDeliverer("default", d, classify)
}

// SmarthostDeliverer is Deliverer for the named smarthost: its samples
// carry smarthost=NAME. The failure counters of the name start at zero.
func (m *Metrics) SmarthostDeliverer(name string, d Deliverer, classify func(error) string) Deliverer {
	if d == nil {
		return nil
	}
	m.connFail.WithLabelValues(name)
	m.authFail.WithLabelValues(name)
	return &deliverer{m: m, next: d, classify: classify, name: name}
}

type deliverer struct {
	m        *Metrics
	next     Deliverer
	classify func(error) string
	name     string
}

func (w *deliverer) Deliver(ctx context.Context, d *envelope.Delivery) (envelope.Outcome, error) {
	start := w.m.clock()
	out, err := w.next.Deliver(ctx, d)
	result := "ok"
	if err != nil {
		result = "error"
		switch w.classify(err) {
		case FailConnection:
			w.m.connFail.WithLabelValues(w.name).Inc()
		case FailAuth:
			w.m.authFail.WithLabelValues(w.name).Inc()
		}
	}
	w.m.attempt.WithLabelValues(result, w.name).Observe(w.m.clock().Sub(start).Seconds())
	return out, err
}
