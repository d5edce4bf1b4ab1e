package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relayd/internal/modversion"
)

// goSMTPVersion is the go-smtp version in this build.
func goSMTPVersion(t *testing.T) string {
	v, err := modversion.Of("github.com/emersion/go-smtp", "../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGoSMTPVersion makes the go-smtp version a test input: the seam's
// assumptions hold for VerifiedGoSMTP. The differential tests run whatever
// the version; this one says what to do when it moved.
func TestGoSMTPVersion(t *testing.T) {
	if v := goSMTPVersion(t); v != VerifiedGoSMTP {
		t.Fatalf("go-smtp changed from %s to %s: re-verify upstream/wire against its client's buffering (read client.go/data.go diff) and update VerifiedGoSMTP", VerifiedGoSMTP, v)
	}
}

// TestAssumeInterleave checks assumptions 1 and 2 of the package doc on
// one connection to a go-smtp server: go-smtp's commands and the seam's
// alternate (a RSET and a pipelined transaction through the seam between
// go-smtp's transactions, a body through WriteData), every reply reaches
// the reader whose command asked for it, and the seam's reader holds
// nothing after each of its exchanges.
func TestAssumeInterleave(t *testing.T) {
	g := newGoServer(t)
	c, conn := g.dial(t)
	w := New(conn)
	empty := func(step string) {
		t.Helper()
		if n := w.r.R.Buffered(); n != 0 {
			t.Fatalf("%s: the seam's reader holds %d octets", step, n)
		}
	}
	want := func(step string, r Reply, err error, code int) {
		t.Helper()
		if err != nil || r.Code != code {
			t.Fatalf("%s: %+v %v, want %d", step, r, err, code)
		}
		empty(step)
	}
	must := func(step string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}

	// go-smtp's transaction, body through WriteData.
	must("Mail", c.Mail("a@wire.test", nil))
	must("Rcpt", c.Rcpt("b@wire.test", nil))
	dc, err := c.Data()
	must("Data", err)
	must("WriteData", w.WriteData(dc, strings.NewReader("one\r\n.\r\n"), 0))
	_, err = dc.CloseWithResponse()
	must("Close", err)
	empty("after go-smtp's transaction")

	// An abandoned transaction, reset through the seam.
	must("Mail", c.Mail("a@wire.test", nil))
	r, err := w.Cmd("RSET")
	want("RSET", r, err, 250)
	must("Noop", c.Noop())

	// A pipelined transaction through the seam, then go-smtp again.
	must("Send", w.Send("MAIL FROM:<a@wire.test>", "RCPT TO:<b@wire.test>", "RCPT TO:<c@wire.test>", "DATA"))
	for i, code := range []int{250, 250, 250, 354} {
		r, err := w.Reply()
		if err != nil || r.Code != code {
			t.Fatalf("pipelined reply %d: %+v %v, want %d", i, r, err, code)
		}
	}
	empty("after the pipelined group")
	must("WriteBody", w.WriteBody(strings.NewReader("two!"), 4))
	r, err = w.Reply()
	want("final dot", r, err, 250)
	must("Noop", c.Noop())
	must("Mail", c.Mail("a@wire.test", nil))
	must("Rcpt", c.Rcpt("b@wire.test", nil))
	dc, err = c.Data()
	must("Data", err)
	_, err = dc.Write([]byte("three\r\n"))
	must("Write", err)
	_, err = dc.CloseWithResponse()
	must("Close", err)
	must("Quit", c.Quit())

	msgs, _ := g.take()
	if got := string(bytes.Join(msgs, []byte("|"))); got != "one\r\n.\r\n|two!\r\n|three\r\n" {
		t.Fatalf("received %q", got)
	}
}

// TestAssumeLineLimit pins go-smtp's reply line limit, which the seam
// copies, on go-smtp's own reader: a line of GoSMTPLineLimit-1 octets
// before its LF is read, one more is refused with smtp.ErrTooLongLine. The
// differential test checks the seam agrees.
func TestAssumeLineLimit(t *testing.T) {
	rs := newReplyServer(t)
	for n, ok := range map[int]bool{GoSMTPLineLimit - 1: true, GoSMTPLineLimit: false} {
		c, conn, done := rs.dial(t, lineScript(n))
		err := c.Mail("a@wire.test", nil)
		conn.Close()
		<-done
		if ok != (err == nil) || !ok && !errors.Is(err, smtp.ErrTooLongLine) {
			t.Errorf("a reply line of %d octets: go-smtp says %v", n, err)
		}
	}
}
