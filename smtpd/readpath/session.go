package readpath

import (
	"io"
	"sync/atomic"

	"github.com/emersion/go-smtp"
)

// Session is the read path of one go-smtp session: the wiring a
// Backend's Session calls. A nil *Session is valid and changes nothing
// (go-smtp's own reading throughout).
type Session struct {
	conn *smtp.Conn
	gate *Gate // nil if go-smtp's layout is unknown
	// Fast enables the DATA fast path (tests turn it off).
	Fast bool
	// Switches, if set, counts hand-overs to the fast path.
	Switches *atomic.Int64
}

// Attach is called from Backend.NewSession with the session's go-smtp
// Conn: it puts the Gate under go-smtp's line reader (command lines
// bounded at CmdLineLimit, content unbounded), if go-smtp's layout is the
// one verified.
func Attach(c *smtp.Conn) *Session {
	return &Session{conn: c, gate: installGate(c), Fast: true}
}

// Gated reports whether the Gate is in, that is whether content lines are
// unbounded and command lines bounded by the Gate.
func (s *Session) Gated() bool { return s != nil && s.gate != nil }

// Data is called first thing in Session.Data with go-smtp's reader, even
// if the session then refuses the message: after DATA (not BDAT) go-smtp
// reads content whatever Data answers, and the Gate must know.
func (s *Session) Data(r io.Reader) {
	if _, bdat := r.(*io.PipeReader); !bdat && s.Gated() {
		// Not for BDAT: its Data runs on another goroutine, and the
		// gate follows BDAT by itself.
		s.gate.dataNext = true
	}
}

// Content returns the reader for the content of a message the session
// takes, with go-smtp's reader r and the server's MaxMessageBytes: on a
// cleartext connection (a Tapped conn) the fast path, which decodes the
// socket itself; else for DATA, if w is not nil, r made prompt
// (promptReader); else r. finish must be called before Session.Data
// returns (it drains what the consumer left, as go-smtp's drain would, or
// leaves prompt mode).
func (s *Session) Content(r io.Reader, maxBytes int64, w Waker) (_ io.Reader, fast bool, finish func()) {
	_, bdat := r.(*io.PipeReader)
	if s != nil && s.Fast {
		if t, ok := s.conn.Conn().(Tapped); ok {
			tap := t.ReadTap()
			if bdat {
				// go-smtp stops counting line lengths while it copies a
				// BDAT chunk: from here on the tracker's count may differ
				// from its.
				tap.noFast = true
			} else if !tap.noFast {
				fd := newFastData(r, tap, maxBytes)
				fd.switched = s.Switches
				return fd, true, fd.finish
			}
		}
	}
	if bdat || w == nil {
		// Not for BDAT, whose chunks go-smtp reads on another goroutine.
		return r, false, func() {}
	}
	pr := newPromptReader(r, w)
	return pr, false, pr.finish
}

// Reset is called from Session.Reset: go-smtp is done with a DATA
// transaction (or never began one), so what follows is commands.
func (s *Session) Reset() {
	if s.Gated() {
		s.gate.reset()
	}
}
