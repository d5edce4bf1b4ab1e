package readpath

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// gateProbe is a backend that checks, in NewSession, what Attach did to
// go-smtp's Conn.
type gateProbe struct {
	recorder
	got chan string
}

func (b *gateProbe) NewSession(c *smtp.Conn) (smtp.Session, error) {
	rp := Attach(c)
	src, limit, count, ok := llrFields(c)
	switch g, isGate := (*src).(*Gate); {
	case !ok || !rp.Gated():
		b.got <- "go-smtp's lineLimitReader not found"
	case !isGate:
		b.got <- "go-smtp's line reader does not read through the Gate"
	case g.r != io.Reader(c.Conn()):
		b.got <- "the Gate does not read go-smtp's net.Conn"
	case *limit != 0 || *count != 0:
		b.got <- "go-smtp's own line count is still on"
	case g.r.(Tapped).ReadTap().gate != g:
		b.got <- "the Tap does not know the Gate"
	default:
		b.got <- ""
	}
	return &recSession{b: &b.recorder, name: c.Hostname(), rp: rp}, nil
}

// Assumption 1 of the package doc on a live go-smtp connection: the
// Gate goes in under go-smtp's line reader, over the very net.Conn go-smtp
// was given, and go-smtp's own count is off.
func TestAssumptionGateUnderLineReader(t *testing.T) {
	be := &gateProbe{recorder: recorder{seam: true, msgs: map[string][]string{}, busy: map[string]int{}}, got: make(chan string, 1)}
	s := smtp.NewServer(be)
	s.Domain = "diff.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(diffListener{l, true})
	defer s.Close()
	d := &diffServer{addr: l.Addr().String(), be: &be.recorder}
	d.run(t, "probe", []byte("QUIT\r\n"), nil)
	select {
	case msg := <-be.got:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("go-smtp did not create a session at EHLO")
	}
}
