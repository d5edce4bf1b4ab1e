package readpath

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"
)

// The DATA fast path.
//
// go-smtp's DATA reader takes its input one byte at a time from a
// bufio.Reader: on 1 MB messages that was half of relayd's CPU. On a
// cleartext connection, the session reads the content straight from the
// socket instead, a buffer at a time, with the same decoding (dot.go)
// and the same limits (line length, message size). The hand-over
// goes through the Tap, the source of go-smtp's bufio.Reader:
//
//  1. Data arms the conn and reads through go-smtp's reader, which first
//     consumes whatever go-smtp had buffered.
//  2. A bufio.Reader reads from its source only when its buffer is empty:
//     once the armed conn is read from again, everything it handed to
//     go-smtp has been consumed by the DATA reader. The conn answers that
//     Read with errSwitch, which the DATA reader passes up to fastData.
//  3. fastData decodes the socket from the DATA reader's state at that
//     point, which the conn derives from the bytes it handed out (tracker;
//     exact once an ordinary byte of this message was handed out, so the
//     first buffer of a message always takes go-smtp's path).
//  4. At the end of the content, the bytes read beyond it (pipelined
//     commands) are queued for go-smtp, preceded by the few bytes that take
//     its DATA reader from the state it stopped in to the end (endOf): its
//     own drain after Data then ends at once, and it reads the next command
//     from the queued bytes.
//
// If the consumer stops early (an error reply), fastData reads the rest of
// the content and discards it, as go-smtp does. A network error or a line
// over the limit poisons the conn: go-smtp gets that error on every later
// read, as it would have from the socket or its line limit.
//
// TLS sessions (go-smtp then reads from a tls.Conn, not from the Tap)
// and BDAT keep go-smtp's path, and so does DATA after BDAT in a session.
//
// One difference remains, by design: a line over the limit in pipelined
// commands read in the same buffer as the end of the content makes go-smtp
// refuse the message, while here the message is taken and go-smtp refuses
// the commands after it (500, and it closes). go-smtp's own path does the
// same when its read happens to end with the content. All of this runs on the session's
// goroutine: go-smtp reads the connection only from there.

// errSwitch is what the armed conn answers go-smtp's reader with.
var errSwitch = errors.New("smtpd: DATA continues on the fast path")

// tracker follows, over every byte the Tap hands to go-smtp, the state
// go-smtp's DATA reader would be in and its line-limit count.
type tracker struct {
	handed  int64    // bytes handed out
	lastOrd int64    // offset of the last ordinary byte handed out, -1: none
	st      dotState // DATA reader state after everything handed out (see handOver)
	lineLen int      // go-smtp's line-limit count after everything handed out
}

func (t *tracker) note(b []byte) {
	if len(b) == 0 {
		return
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		t.lineLen = len(b) - i
	} else {
		t.lineLen += len(b)
	}
	i := len(b) - 1
	for i >= 0 && !ordinary(b[i]) {
		i--
	}
	if i >= 0 {
		t.st, t.lastOrd = stData, t.handed+int64(i)
	}
	for _, c := range b[i+1:] {
		t.st, _ = step(t.st, c)
	}
	t.handed += int64(len(b))
}

// handOver reports whether the armed conn may switch now, that is whether
// the tracked state is the DATA reader's: go-smtp's buffer is empty (it
// is reading), so the DATA reader has consumed every byte handed out after
// the DATA command line. Either an ordinary byte was handed out since
// arming (it belongs to this content, and every state after it is the
// same for both), or the tracked state is stBOL, stDot or stDotCR: the
// DATA reader starts at stBOL where the tracker, after the command line's
// LF, is at stBOL or stData, and the two agree from the first byte on
// except after "." (stDot against stData) and ".\r" (stDotCR against
// stCR), see TestHandOverStates. The latter is what makes a message that
// the client sends after the 354, the normal case, take the fast path from
// its first byte. Also, the content has not ended, and the current line
// leaves room for endOf's bytes under go-smtp's limit (if go-smtp has one
// for content: not once the Gate is in), and the gate between go-smtp
// and this conn holds nothing it read from here (it always hands all of
// the content it has before it reads again, but not a command line it
// took for one before it knew the content had begun, see Gate.Read).
func (c *Tap) handOver(limit int) bool {
	t := &c.trk
	known := t.lastOrd >= c.armedAt || t.st == stBOL || t.st == stDot || t.st == stDotCR
	return known && t.st != stEOF && (limit <= 0 || t.lineLen+8 <= limit) && (c.gate == nil || !c.gate.held())
}

// rawPool holds fastData's socket buffers.
var rawPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// fastData is the reader Data hands to the intake on a cleartext
// connection.
type fastData struct {
	r         io.Reader // go-smtp's DATA reader, until the switch
	c         *Tap
	lineLimit int
	limited   bool
	left      int64 // content bytes still allowed, as go-smtp's reader counts

	switched *atomic.Int64 // counts hand-overs, may be nil
	dec      *dotDecoder   // set at the switch
	from     dotState      // go-smtp's reader's state at the switch
	raw      *[]byte
	rs, re   int   // (*raw)[rs:re]: read from the socket, not decoded yet
	ended    bool  // the end of the content was decoded
	err      error // sticky read error after the switch
}

func newFastData(r io.Reader, c *Tap, maxBytes int64) *fastData {
	c.armed, c.armedAt = true, c.trk.handed
	return &fastData{r: r, c: c, lineLimit: c.lineLimit, limited: maxBytes > 0, left: maxBytes}
}

func (f *fastData) Read(p []byte) (int, error) {
	if f.dec == nil {
		n, err := f.r.Read(p)
		f.left -= int64(n)
		if !errors.Is(err, errSwitch) {
			return n, err
		}
		f.c.armed = false
		if f.switched != nil {
			f.switched.Add(1)
		}
		f.from = f.c.trk.st
		f.dec = &dotDecoder{st: f.from, lineLen: f.c.trk.lineLen, limit: f.lineLimit}
		f.raw = rawPool.Get().(*[]byte)
		if n > 0 {
			return n, nil
		}
	}
	return f.decode(p)
}

// decode reads and decodes the socket into p, as go-smtp's reader would:
// the size limit first, then content until the end.
func (f *fastData) decode(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.ended {
		return 0, io.EOF
	}
	if f.limited {
		if f.left <= 0 {
			return 0, smtp.ErrDataTooLarge
		}
		if int64(len(p)) > f.left {
			p = p[:f.left]
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	raw := *f.raw
	for {
		if f.rs == f.re {
			n, err := f.c.next(raw)
			if n == 0 {
				if err == nil {
					continue
				}
				// go-smtp's next read (its drain, then the next
				// command) gets the socket's error. Unlike go-smtp's
				// own path, which reads on after a timeout in DATA and
				// takes the rest of the content for commands, the
				// session then ends (421 on a timeout): where the
				// content stopped is unknown.
				f.c.sticky = err
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				f.err = err
				return 0, err
			}
			f.rs, f.re = 0, n
		}
		src := raw[f.rs:f.re]
		nw, nr := f.dec.decode(p, src)
		if !f.dec.lines(src[:nr]) {
			return 0, f.fail(smtp.ErrTooLongLine)
		}
		f.rs += nr
		f.left -= int64(nw)
		if f.dec.st == stEOF {
			f.end()
			if nw > 0 {
				return nw, nil
			}
			return 0, io.EOF
		}
		if nw > 0 {
			return nw, nil
		}
	}
}

// fail makes err sticky here and on the conn (go-smtp sees it next).
func (f *fastData) fail(err error) error {
	f.err, f.c.sticky = err, err
	return err
}

// end queues for go-smtp the way to its reader's end, then the bytes
// read past the content.
func (f *fastData) end() {
	f.ended = true
	rest := (*f.raw)[f.rs:f.re]
	tail := endOf(f.from)
	// What is still queued from an earlier message (pipelined content)
	// follows what was read past this one.
	feed := make([]byte, 0, len(tail)+len(rest)+len(f.c.feed))
	f.c.feed = append(append(append(feed, tail...), rest...), f.c.feed...)
	f.rs = f.re
}

// finish runs when Data returns, before go-smtp's drain: it disarms the
// conn and, on the fast path, consumes what the intake left of the content
// (discarded, without the size limit, as go-smtp's drain does).
func (f *fastData) finish() {
	f.c.armed = false
	if f.dec != nil && !f.ended && f.err == nil {
		f.limited = false
		var scratch [4096]byte
		for {
			if _, err := f.decode(scratch[:]); err != nil {
				break
			}
		}
	}
	if f.raw != nil {
		rawPool.Put(f.raw)
		f.raw = nil
	}
}
