package metrics

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"relayd/envelope"
	"relayd/maillog"
)

// scrape serves m on a loopback port, fetches /metrics and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Serve(ctx, l, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value returns the value of the series of family name with the given
// label pairs ("k", "v", ...), or -1 if absent.
func value(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

type errDeliverer struct{ err error }

func (e errDeliverer) Deliver(context.Context, *envelope.Delivery) (envelope.Outcome, error) {
	return envelope.Outcome{}, e.err
}

func TestCountsFromMailLogAndDeliverer(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := New(Options{Version: "v-test", Clock: func() time.Time { return now },
		Stats: func() QueueStats { return QueueStats{Messages: 3, Held: 1, Oldest: now.Add(-90 * time.Second)} }})
	var out bytes.Buffer
	// Level error: mail lines are not printed but still counted.
	log := slog.New(m.LogHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})))
	log = log.With("component", "test")
	for range 3 {
		maillog.Log(log, maillog.Event{ID: "A", From: "a@x", To: "b@y", Status: maillog.Queued, Size: 10})
	}
	maillog.Log(log, maillog.Event{ID: "A", To: "b@y", Status: maillog.Sent, Delay: 2 * time.Second, Relay: "r"})
	maillog.Log(log, maillog.Event{ID: "A", To: "c@y", Status: maillog.Deferred, Reply: "451 4.3.0 later"})
	maillog.Log(log, maillog.Event{ID: "A", To: "d@y", Status: maillog.Failed, DSN: "5.1.1"})
	maillog.Log(log, maillog.Event{ID: "A", To: "e@y", Status: maillog.Expired, DSN: "4.4.7"})
	maillog.Log(log, maillog.Event{To: "z@y", Status: maillog.Rejected, DSN: "5.7.1", Reply: "relay access denied"})
	maillog.Log(log, maillog.Event{To: "z@y", Status: maillog.Rejected, DSN: "5.3.4", Reply: "too big"})
	maillog.Log(log, maillog.Event{ID: "A", To: "a@x", Status: maillog.Bounced,
		Extra: []slog.Attr{slog.String("notice", "failed")}})
	maillog.Log(log, maillog.Event{ID: "A", To: "a@x", Status: maillog.Bounced, // the notifier's companion line
		Extra: []slog.Attr{slog.String("notice", "failed"), slog.String("notice_id", "B")}})
	log.Info("not a mail line", "status", "sent")
	if out.Len() != 0 {
		t.Errorf("records below the level were printed: %s", out.String())
	}

	classify := func(err error) string { return err.Error() }
	for _, e := range []string{FailConnection, FailConnection, FailAuth, ""} {
		m.Deliverer(errDeliverer{errors.New(e)}, classify).Deliver(context.Background(), &envelope.Delivery{})
	}
	m.SmarthostDeliverer("ses", errDeliverer{errors.New(FailAuth)}, classify).Deliver(context.Background(), &envelope.Delivery{})
	m.Reload(true)
	m.Reload(false)

	mf := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"relayd_messages_accepted_total", nil, 3},
		{"relayd_recipients_total", []string{"status", "sent"}, 1},
		{"relayd_recipients_total", []string{"status", "deferred"}, 1},
		{"relayd_recipients_total", []string{"status", "failed"}, 1},
		{"relayd_recipients_total", []string{"status", "expired"}, 1},
		{"relayd_messages_rejected_total", []string{"reason", ReasonRelayDenied}, 1},
		{"relayd_messages_rejected_total", []string{"reason", ReasonSize}, 1},
		{"relayd_bounces_total", []string{"kind", "failed"}, 1},
		{"relayd_delivery_delay_seconds", nil, 1},
		{"relayd_smarthost_attempt_seconds", []string{"result", "error", "smarthost", "default"}, 4},
		{"relayd_smarthost_attempt_seconds", []string{"result", "error", "smarthost", "ses"}, 1},
		{"relayd_smarthost_connection_failures_total", []string{"smarthost", "default"}, 2},
		{"relayd_smarthost_connection_failures_total", []string{"smarthost", "ses"}, 0},
		{"relayd_smarthost_auth_failures_total", []string{"smarthost", "default"}, 1},
		{"relayd_smarthost_auth_failures_total", []string{"smarthost", "ses"}, 1},
		{"relayd_config_reloads_total", []string{"result", "rejected"}, 1},
		{"relayd_queue_messages", nil, 3},
		{"relayd_queue_held_messages", nil, 1},
		{"relayd_queue_oldest_message_age_seconds", nil, 90},
		{"relayd_build_info", []string{"version", "v-test"}, 1},
	} {
		if got := value(mf, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if h := mf["relayd_delivery_delay_seconds"].Metric[0].Histogram; h.GetSampleSum() != 2 {
		t.Errorf("delay sum %v, want 2", h.GetSampleSum())
	}
}

func TestReasonLabels(t *testing.T) {
	for _, c := range []struct{ dsn, reply, want string }{
		{"5.7.1", "relay access denied", ReasonRelayDenied},
		{"5.7.1", "sender not allowed", ReasonPolicy},
		{"5.7.0", "authentication required", ReasonAuth},
		{"5.7.8", "bad credentials", ReasonAuth},
		{"5.3.4", "message too big", ReasonSize},
		{"4.3.1", "spool full", ReasonResources},
		{"5.6.0", "bad header", ReasonSyntax},
		{"5.5.2", "syntax", ReasonSyntax},
		{"", "", ReasonOther},
	} {
		if got := Reason(c.dsn, c.reply); got != c.want {
			t.Errorf("Reason(%q, %q) = %q, want %q", c.dsn, c.reply, got, c.want)
		}
	}
}

func TestLogHandlerKeepsInnerLevel(t *testing.T) {
	m := New(Options{})
	var out bytes.Buffer
	log := slog.New(m.LogHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	log.Debug("hidden")
	log.Info("shown", "k", "v")
	log.WithGroup("g").Info("grouped", "status", "queued")
	if s := out.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "shown") || !strings.Contains(s, "g.status=queued") {
		t.Errorf("output:\n%s", s)
	}
	if v := value(scrape(t, m), "relayd_messages_accepted_total"); v != 0 {
		t.Errorf("grouped attribute counted: %v", v)
	}
}
