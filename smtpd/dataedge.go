package smtpd

import (
	"io"
	"time"
)

// promptWait is how long go-smtp's DATA reader may wait for more bytes
// before what it has is handed on (promptReader).
const promptWait = 100 * time.Millisecond

// promptReader hands go-smtp's DATA reader's bytes to the intake without
// waiting for its buffer to fill. go-smtp's reader returns only when the
// caller's buffer is full or the content has ended, so content that does
// not end where the client thinks (a bare CR before the dot:
// "x\r\r\n.\r\n", RFC 5321 §2.3.8) sat in its buffer while the client
// waited for a reply: the intake never saw the bare CR it refuses. On
// this path (TLS, DATA after BDAT) the conn wakes the reader every
// promptWait while it waits for the client (idleConn.prompt), and the
// wake-up, which go-smtp's reader returns as an error with the bytes it
// has, is turned into a short read; its state is kept, so the next Read
// goes on. The fast path (readpath) already returns what it has. The idle
// deadline still counts from when the wait began.
type promptReader struct {
	r io.Reader
	c *idleConn
}

func newPromptReader(r io.Reader, c *idleConn) *promptReader {
	c.prompt, c.softExpired, c.waitFrom = promptWait, false, time.Time{}
	return &promptReader{r: r, c: c}
}

func (p *promptReader) Read(b []byte) (int, error) {
	for {
		n, err := p.r.Read(b)
		if err != nil && p.c.softExpired {
			p.c.softExpired = false
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
func (p *promptReader) finish() {
	p.c.prompt, p.c.softExpired, p.c.waitFrom = 0, false, time.Time{}
}
