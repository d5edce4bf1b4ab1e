package readpath

import "io"

// Tap is the source of go-smtp's bufio.Reader on a cleartext connection:
// what it reads comes from here, so the DATA fast path (fast.go) can tell
// where go-smtp's DATA reader stands and take over the socket. Session
// goroutine only: go-smtp reads the connection only from there.
type Tap struct {
	raw       io.Reader // the socket (under relayd's deadlines)
	lineLimit int       // go-smtp's line limit for DATA content; <= 0: none
	noFast    bool      // BDAT was used: go-smtp's DATA path for the rest of the session
	gate      *Gate     // go-smtp reads through it (gate.go); nil before the session
	trk       tracker
	armed     bool   // Data waits for the hand-over
	armedAt   int64  // trk.handed when armed
	feed      []byte // bytes for go-smtp before the socket's
	sticky    error  // returned by every read once set
}

// NewTap returns the tap over raw. lineLimit is the line limit go-smtp
// applies to DATA content, which the fast path mirrors (see LineLimit).
func NewTap(raw io.Reader, lineLimit int) *Tap {
	return &Tap{raw: raw, lineLimit: lineLimit, trk: tracker{lastOrd: -1}}
}

// Tapped is a net.Conn whose reads go through a Tap (the fast path finds
// it through go-smtp's Conn).
type Tapped interface {
	ReadTap() *Tap
}

// Read is go-smtp's source: the queued feed, else the socket. It answers
// errSwitch instead when armed and the hand-over is possible (fast.go).
func (t *Tap) Read(p []byte) (int, error) {
	if t.sticky != nil {
		return 0, t.sticky
	}
	if t.armed && t.handOver(t.lineLimit) {
		t.armed = false
		return 0, errSwitch
	}
	n, err := t.next(p)
	t.trk.note(p[:n])
	return n, err
}

// next fills p for the fast path: the queued feed first (content a
// previous message's fast path read ahead), then the socket.
func (t *Tap) next(p []byte) (int, error) {
	if len(t.feed) > 0 {
		n := copy(p, t.feed)
		if t.feed = t.feed[n:]; len(t.feed) == 0 {
			t.feed = nil
		}
		return n, nil
	}
	return t.raw.Read(p)
}
