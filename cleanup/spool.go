package cleanup

import (
	"context"
	"io"

	"relayd/envelope"
)

// Draft is one message on its way into the spool, as cleanup uses it
// (*queue.Draft): written once, then committed or aborted.
type Draft interface {
	// ID is the queue ID the message gets when committed.
	ID() string
	// Write appends to the body.
	io.Writer
	// Contents reads back what was written (to re-encode it).
	Contents() (io.ReaderAt, int64, error)
	// SetFixed names what cleanup changed, for the status=queued line.
	SetFixed(fixed string)
	// Commit makes the message durable with its envelope and header
	// prefix; only after a nil error may the client hear 250.
	Commit(ctx context.Context, env envelope.Envelope, prefix []byte, origin envelope.Origin) error
	// Abort discards the draft; it is idempotent and a no-op after a
	// successful Commit.
	Abort()
}

// SpoolOf adapts a spool whose Create returns its own draft type (for
// *queue.Queue: SpoolOf(q.Create)) to Spool, so cleanup need not import it.
func SpoolOf[D Draft](create func() (D, error)) Spool { return spoolFunc[D](create) }

type spoolFunc[D Draft] func() (D, error)

func (f spoolFunc[D]) Create() (Draft, error) {
	d, err := f()
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return d, nil
}
