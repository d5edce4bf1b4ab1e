package readpath

import (
	"io"
	"time"
)

// PromptWait is how long go-smtp's DATA reader may wait for more bytes
// before what it has is handed on (promptReader).
const PromptWait = 100 * time.Millisecond

// Waker is the connection under go-smtp (smtpd's idleConn, also under
// TLS) in prompt mode: while Prompt is on, a read that waits wakes up
// every d with a timeout, and WokeUp reports (and clears) that the last
// read ended so.
type Waker interface {
	Prompt(d time.Duration) // 0: off
	WokeUp() bool
}

// promptReader hands go-smtp's DATA reader's bytes to the intake without
// waiting for its buffer to fill. go-smtp's reader returns only when the
// caller's buffer is full or the content has ended, so content that does
// not end where the client thinks (a bare CR before the dot:
// "x\r\r\n.\r\n", RFC 5321 §2.3.8) sat in its buffer while the client
// waited for a reply: the intake never saw the bare CR it refuses. On
// go-smtp's path (TLS, DATA after BDAT) the conn wakes the reader every
// PromptWait while it waits for the client, and the wake-up, which
// go-smtp's reader returns as an error with the bytes it has (assumption
// 2), is turned into a short read; its state is kept, so the next Read
// goes on. The fast path already returns what it has.
type promptReader struct {
	r io.Reader
	w Waker
}

func newPromptReader(r io.Reader, w Waker) *promptReader {
	w.Prompt(PromptWait)
	return &promptReader{r: r, w: w}
}

func (p *promptReader) Read(b []byte) (int, error) {
	for {
		n, err := p.r.Read(b)
		if err != nil && p.w.WokeUp() {
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

// finish leaves prompt mode, before go-smtp's own drain of the content
// (which must not stop at a wake-up).
func (p *promptReader) finish() { p.w.Prompt(0) }
