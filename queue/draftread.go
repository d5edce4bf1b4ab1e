package queue

import (
	"errors"
	"fmt"
	"io"
)

// Contents flushes what was written to the draft and returns it for
// reading, from the start: the intake reads a message back to re-encode it
// into a second draft (issue 16, long lines). The draft stays open; the
// reader is valid until it is committed or aborted.
func (d *Draft) Contents() (io.ReaderAt, int64, error) {
	if d.done || d.w == nil {
		return nil, 0, errors.New("queue: contents of a finished draft")
	}
	if err := d.w.Flush(); err != nil {
		return nil, 0, noSpace(fmt.Errorf("queue: write body %s: %w", d.id, err))
	}
	return io.NewSectionReader(d.f, 0, d.size), d.size, nil
}
