// Package metrics exports relayd's Prometheus metrics on [metrics] listen.
//
// Design: the mail log (package maillog) is the single place that sees
// every message event, so message counters are derived from it by a
// slog.Handler wrapper (LogHandler) instead of counters sprinkled through
// the pipeline. Queue length and oldest age are read from the queue at
// scrape time (a collector calling Options.Stats). Smarthost attempt
// duration and connection/AUTH failures come from a queue.Deliverer wrapper
// (Deliverer), which sees every hand-off and its error.
//
// Invariants:
//   - Counting never changes logging: LogHandler forwards every record its
//     inner handler would have taken, and nothing else.
//   - Label values come from small fixed sets (statuses, notice kinds,
//     rejection reasons), never from addresses or replies, so series stay
//     bounded.
//   - Nothing is registered globally: each Metrics has its own registry.
//
// Counting rules (one mail log line = one event):
//   - relayd_messages_accepted_total: status=queued (one per message, relayd's
//     own notices included).
//   - relayd_messages_rejected_total{reason}: status=rejected; reason from
//     the enhanced status code (see Reason).
//   - relayd_recipients_total{status}: sent, deferred, failed, expired: one
//     per recipient and attempt outcome, as in the log.
//   - relayd_bounces_total{kind}: status=bounced lines written by the queue
//     (those carry no notice_id attribute; the notifier's companion line
//     about the same notice does and is not counted again).
package metrics
