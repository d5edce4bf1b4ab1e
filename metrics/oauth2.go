package metrics

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"relayd/token"
)

// refreshResults is the fixed label set of relayd_oauth2_token_refreshes_total.
var refreshResults = []string{"ok",
	string(token.KindUnreachable), string(token.KindServerError), string(token.KindInvalidClient),
	string(token.KindConsentRequired), string(token.KindInvalidGrant), string(token.KindNoRefreshToken),
	string(token.KindRejected), string(token.KindLocal)}

func newRefreshes() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_oauth2_token_refreshes_total",
		Help: "Requests for an OAuth2 access token to the token endpoint, by result (ok, or why it failed)."}, []string{"result"})
}

// countRefresh counts one token.LogRefresh record (its result attribute).
func (m *Metrics) countRefresh(r slog.Record) {
	result := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "result" {
			result = a.Value.String()
			return false
		}
		return true
	})
	for _, k := range refreshResults {
		if k == result {
			m.refreshes.WithLabelValues(result).Inc()
			return
		}
	}
	m.refreshes.WithLabelValues(string(token.KindRejected)).Inc()
}
