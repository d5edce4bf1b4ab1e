package dsn

import (
	"io"
	"time"

	"relayd/internal/reply"
)

// Kind says which RFC 3464 notice to compose.
type Kind string

const (
	Failed  Kind = "failed"  // a bounce: the message will not be delivered
	Delayed Kind = "delayed" // a delay warning: still being retried
	Relayed Kind = "relayed" // passed to a next hop that offers no DSN
)

// Notice is what Compose reports on: one message and the recipients the
// notice is about. It is dsn's own input, so the composer depends on no
// other stage; the notifier fills it from the queue's notice request.
type Notice struct {
	Kind           Kind
	ID             string // queue ID of the original (X-Relayd-Queue-ID, the text)
	From           string // the original's envelope sender ("" for a notice)
	Arrival        time.Time
	EnvID          string // RFC 3461 ENVID, "" when none
	Ret            string // RFC 3461 RET: "FULL" | "HDRS" | ""
	Rcpts          []Recipient
	RemoteMTA      string    // "host[ip]:port" that answered last, "" when none
	LastAttempt    time.Time // zero when never attempted
	WillRetryUntil time.Time // for delayed notices
	// Open reads the original as it went on the wire; nil when there is
	// none. Size is what Open yields.
	Open func() (io.ReadCloser, error)
	Size int64
	// IsNotice: the original was itself a notice (null sender); a failed
	// one is reported to the admin with its own wording.
	IsNotice bool
}

// Recipient is one recipient a notice is about.
type Recipient struct {
	Addr  string      // the envelope recipient as relayd sent it
	ORcpt string      // RFC 3461 ORCPT, "type;addr", "" when none
	Reply reply.Reply // the peer's last reply; zero when there was none
}
