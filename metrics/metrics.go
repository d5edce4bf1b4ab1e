package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure New.
type Options struct {
	Version string
	// Stats is asked at scrape time for queue length and oldest arrival;
	// nil until the queue is open (then reported as empty).
	Stats func() QueueStats
	Clock func() time.Time // default time.Now
}

// Metrics holds relayd's collectors and their registry.
type Metrics struct {
	reg        *prometheus.Registry
	accepted   prometheus.Counter
	rejected   *prometheus.CounterVec
	rcpts      *prometheus.CounterVec
	bounces    *prometheus.CounterVec
	delay      prometheus.Histogram
	attempt    *prometheus.HistogramVec
	connFail   *prometheus.CounterVec // by smarthost
	authFail   *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	refreshes  *prometheus.CounterVec // oauth2.go
	queueStats func() QueueStats
	clock      func() time.Time
}

// Rejection reasons: the fixed label set of relayd_messages_rejected_total.
const (
	ReasonRelayDenied = "relay_denied"
	ReasonAuth        = "auth"
	ReasonPolicy      = "policy"
	ReasonSize        = "size"
	ReasonResources   = "resources"
	ReasonSyntax      = "syntax"
	ReasonOther       = "other"
)

// New builds the collectors in a fresh registry.
func New(o Options) *Metrics {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), queueStats: o.Stats, clock: o.Clock}
	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: "relayd_messages_accepted_total",
		Help: "Messages accepted and durably queued (status=queued)."})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_messages_rejected_total",
		Help: "Messages or recipients refused at intake, by reason."}, []string{"reason"})
	m.rcpts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_recipients_total",
		Help: "Per-recipient delivery outcomes: sent, deferred, failed, expired."}, []string{"status"})
	m.bounces = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_bounces_total",
		Help: "Delivery status notifications generated, by kind (failed, delayed, relayed)."}, []string{"kind"})
	m.delay = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "relayd_delivery_delay_seconds",
		Help:    "Time from arrival to acceptance by the smarthost, per sent recipient.",
		Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600}})
	m.attempt = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "relayd_smarthost_attempt_seconds",
		Help:    "Duration of one hand-off to the smarthost, by result (ok, error) and smarthost (\"default\" is [upstream]).",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"result", "smarthost"})
	m.connFail = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_smarthost_connection_failures_total",
		Help: "Hand-offs that failed at connect, greeting, EHLO, STARTTLS or TLS, by smarthost."}, []string{"smarthost"})
	m.authFail = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_smarthost_auth_failures_total",
		Help: "Hand-offs that failed at AUTH, by smarthost."}, []string{"smarthost"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relayd_config_reloads_total",
		Help: "Configuration reloads, by result (ok, rejected)."}, []string{"result"})
	m.refreshes = newRefreshes()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "relayd_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": o.Version, "goversion": runtime.Version()}})
	build.Set(1)
	for _, s := range []string{"sent", "deferred", "failed", "expired"} {
		m.rcpts.WithLabelValues(s) // export zeros so rate() works from the start
	}
	m.reg.MustRegister(m.accepted, m.rejected, m.rcpts, m.bounces, m.delay, m.attempt,
		m.connFail, m.authFail, m.reloads, m.refreshes, build, queueCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Reload counts a configuration reload.
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("rejected").Inc()
	}
}

// Serve answers /metrics on l until ctx is done.
func (m *Metrics) Serve(ctx context.Context, l net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	// Every read and write has a deadline, idle keep-alives included.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics listener failed", "addr", l.Addr().String(), "err", err)
	}
}

var (
	queueLenDesc = prometheus.NewDesc("relayd_queue_messages", "Messages in the queue (held ones included).", nil, nil)
	queueHeld    = prometheus.NewDesc("relayd_queue_held_messages", "Messages held by the admin.", nil, nil)
	queueOldest  = prometheus.NewDesc("relayd_queue_oldest_message_age_seconds",
		"Age of the oldest queued message; 0 when the queue is empty.", nil, nil)
	queueQuarantined = prometheus.NewDesc("relayd_queue_quarantined_total",
		"Messages moved into corrupt/ since the start (unreadable at recovery, body checksum mismatch): look there.", nil, nil)
)

// QueueStats is what the metrics report of the queue (queue.Stats, which
// the wiring converts, so the metrics need not import the spool).
type QueueStats struct {
	Messages    int       // in the queue, held ones included
	Held        int       // held by the admin
	Oldest      time.Time // arrival of the oldest message; zero when empty
	Quarantined int64     // moved into corrupt/ since the queue was opened
}

// queueCollector asks the queue at scrape time (no disk access).
type queueCollector struct{ m *Metrics }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueLenDesc
	ch <- queueHeld
	ch <- queueOldest
	ch <- queueQuarantined
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	var st QueueStats
	if c.m.queueStats != nil {
		st = c.m.queueStats()
	}
	age := 0.0
	if !st.Oldest.IsZero() {
		age = max(0, c.m.clock().Sub(st.Oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(queueLenDesc, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(queueHeld, prometheus.GaugeValue, float64(st.Held))
	ch <- prometheus.MustNewConstMetric(queueOldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(queueQuarantined, prometheus.CounterValue, float64(st.Quarantined))
}
