// Package defaults holds the built-in values of the settings that more
// than one package applies: conf fills them into a loaded config (the
// values relayd runs with), and queue and upstream fall back to the same
// constants when used directly with a zero field (tests, tools), so each
// number is written once. A value only one package uses stays in that
// package, beside the field it fills.
package defaults

import "time"

// The [queue] section; upstream sizes its relay backoff and connection cap
// by the same values.
const (
	MinBackoff  = 5 * time.Minute    // queue.min_backoff
	MaxBackoff  = time.Hour          // queue.max_backoff
	MaxAge      = 5 * 24 * time.Hour // queue.max_age ("5d")
	Concurrency = 4                  // queue.concurrency, and upstream's MaxConns
)

// UpstreamTimeout is upstream.timeout: connecting, every write, and every
// reply as a whole.
const UpstreamTimeout = 2 * time.Minute
