package metrics

import (
	"io"
	"log/slog"
	"testing"

	"relayd/token"
)

func TestTokenRefreshesCounted(t *testing.T) {
	m := New(Options{Version: "v-test"})
	// Level error: the refresh lines are not printed but still counted.
	log := slog.New(m.LogHandler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))).With("component", "oauth2")
	log.Info(token.LogRefresh, "result", "ok")
	log.Info(token.LogRefresh, "result", "ok")
	log.Warn(token.LogRefresh, "result", string(token.KindUnreachable))
	log.Warn(token.LogRefresh, "result", "something new")
	mf := scrape(t, m)
	for _, c := range []struct {
		result string
		want   float64
	}{{"ok", 2}, {"unreachable", 1}, {"rejected", 1}} {
		if v := value(mf, "relayd_oauth2_token_refreshes_total", "result", c.result); v != c.want {
			t.Errorf("result=%s: %v, want %v", c.result, v, c.want)
		}
	}
}
