package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Differential tests of the body writer: the same body goes to a go-smtp
// server three ways, each on its own connection and server, and the
// servers must receive the same bytes (the whole client stream, not just
// the decoded message) and the clients the same replies:
//
//   - plain: go-smtp's Client, io.Copy into Data's writer (the reference);
//   - data: go-smtp's Client up to Data, the body through WriteData;
//   - pipelined: MAIL, RCPT and DATA through Send, their replies through
//     Reply, the body through WriteBody.

// diffConns is one connection per way, each to its own server.
type diffConns struct {
	servers [3]*goServer
	clients [3]*smtp.Client
	wires   [3]*Conn
}

var diffWays = [3]string{"plain", "data", "pipelined"}

func newDiffConns(t testing.TB) *diffConns {
	var servers [3]*goServer
	for i := range servers {
		servers[i] = newGoServer(t)
	}
	return dialDiff(t, servers)
}

// dialDiff makes a connection to each of servers.
func dialDiff(t testing.TB, servers [3]*goServer) *diffConns {
	d := &diffConns{servers: servers}
	for i := range d.servers {
		var conn net.Conn
		d.clients[i], conn = d.servers[i].dial(t)
		d.wires[i] = New(conn)
	}
	for _, g := range d.servers {
		g.take() // the EHLO
	}
	return d
}

const (
	diffFrom = "a@wire.test"
	diffTo   = "b@wire.test"
)

// send delivers body the way way, reading it in random chunks; the result
// is the reply to the final dot in go-smtp's terms.
func (d *diffConns) send(t testing.TB, way int, body []byte, rng *rand.Rand) string {
	t.Helper()
	c, w := d.clients[way], d.wires[way]
	src := &chunkReader{b: body, rng: rng, max: 1 + rng.IntN(9000)}
	if diffWays[way] == "pipelined" {
		// The line go-smtp's Mail sends to a server offering 8BITMIME.
		if err := w.Send("MAIL FROM:<"+diffFrom+"> BODY=8BITMIME", "RCPT TO:<"+diffTo+">", "DATA"); err != nil {
			t.Fatal(err)
		}
		for _, want := range []int{250, 250, 354} {
			if r, err := w.Reply(); err != nil || r.Code != want {
				t.Fatalf("pipelined: reply %+v %v, want %d", r, err, want)
			}
		}
		if err := w.WriteBody(src, int64(len(body))); err != nil {
			t.Fatal(err)
		}
		r, err := w.Reply()
		if err != nil {
			return "error: " + err.Error()
		}
		if r.Code == 250 { // what go-smtp's CloseWithResponse accepts
			return "ok: " + r.Text
		}
		return describe(nil, r.SMTPError())
	}
	if err := c.Mail(diffFrom, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(diffTo, nil); err != nil {
		t.Fatal(err)
	}
	dc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if diffWays[way] == "data" {
		err = w.WriteData(dc, src, int64(len(body)))
	} else {
		_, err = io.Copy(dc, src)
	}
	if err != nil {
		t.Fatal(err)
	}
	return describe(dc.CloseWithResponse())
}

// describe is a reply to the final dot as go-smtp's Client reports it.
func describe(resp *smtp.DataResponse, err error) string {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return "ok: " + resp.StatusText
	case errors.As(err, &se):
		return fmt.Sprintf("smtp: %d %v %q", se.Code, se.EnhancedCode, se.Message)
	}
	return "error: " + err.Error()
}

// check sends body all three ways and compares.
func (d *diffConns) check(t testing.TB, body []byte, rng *rand.Rand) {
	t.Helper()
	var replies [3]string
	var msgs [3][][]byte
	var raws [3][]byte
	for way := range diffWays {
		replies[way] = d.send(t, way, body, rng)
		msgs[way], raws[way] = d.servers[way].take()
	}
	if len(msgs[0]) != 1 {
		t.Fatalf("plain: the server received %d messages, want 1", len(msgs[0]))
	}
	for way := 1; way < len(diffWays); way++ {
		name := diffWays[way]
		if replies[way] != replies[0] {
			t.Errorf("%s: reply %q, go-smtp's %q", name, replies[way], replies[0])
		}
		if len(msgs[way]) != 1 || !bytes.Equal(msgs[way][0], msgs[0][0]) {
			got := []byte(nil)
			if len(msgs[way]) > 0 {
				got = msgs[way][0]
			}
			t.Errorf("%s: %d messages; received message differs from go-smtp's %s", name, len(msgs[way]), firstDiff(got, msgs[0][0]))
		}
		if !bytes.Equal(raws[way], raws[0]) {
			t.Errorf("%s: the client's bytes differ from go-smtp's %s", name, firstDiff(raws[way], raws[0]))
		}
	}
	if t.Failed() {
		t.Fatalf("body (%d octets) %q", len(body), body[:min(len(body), 200)])
	}
}

// edgeBodies are the bodies every run tries first.
var edgeBodies = []string{
	"",
	"\r\n",
	"\n",
	"\r",
	".",
	"..",
	".\r\n",
	"a\r\n.\r\nb",
	"a\r\n..\r\n.\r\n",
	"no final CRLF",
	"bare\nLF\n.dot\n",
	"bare\rCR\r.dot\r",
	"\r\r\n\r\r\r\n.\r\r",
	"nul\x00\r\n\x00.\r\n",
	"8-bit \xc3\xa9\xff\x80\r\n.\xfe\r\n",
	"12345", // a length the server refuses
	strings.Repeat("x", 5000) + "\r\n." + strings.Repeat("y", 4999) + "\n",
}

// randomBody builds a body of up to 20 lines of 0 to 5000 octets
// (mostly short) with any of the awkward bytes, ended by CRLF, LF, CR,
// CR CR LF or nothing.
func randomBody(rng *rand.Rand) []byte {
	if rng.IntN(20) == 0 {
		return nil
	}
	const alphabet = "abcdefghij XYZ\t.\x00\x80\xc3\xa9\xff"
	ends := []string{"\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n", ""}
	var b []byte
	for range rng.IntN(20) + 1 {
		for rng.IntN(4) == 0 {
			b = append(b, '.')
		}
		n := rng.IntN(80)
		if rng.IntN(8) == 0 {
			n = rng.IntN(5001)
		}
		for range n {
			c := alphabet[rng.IntN(len(alphabet))]
			if rng.IntN(200) == 0 {
				c = "\r\n"[rng.IntN(2)]
			}
			b = append(b, c)
		}
		b = append(b, ends[rng.IntN(len(ends))]...)
	}
	return b
}

// TestWireDataDifferential sends the edge bodies and then random ones
// (at most wireCases, for at most wireTime) all three ways.
func TestWireDataDifferential(t *testing.T) {
	const wireCases, wireTime = 300, 10 * time.Second
	d := newDiffConns(t)
	rng := rand.New(rand.NewPCG(21, 1))
	for _, b := range edgeBodies {
		d.check(t, []byte(b), rng)
	}
	start, n := time.Now(), 0
	for ; n < wireCases && time.Since(start) < wireTime; n++ {
		d.check(t, randomBody(rng), rng)
	}
	if n < 20 {
		t.Fatalf("only %d random bodies in %v", n, wireTime)
	}
	t.Logf("%d edge and %d random bodies", len(edgeBodies), n)
}

func FuzzWireData(f *testing.F) {
	for i, b := range edgeBodies {
		f.Add([]byte(b), uint64(i))
	}
	rng := rand.New(rand.NewPCG(21, 2))
	for i := range 8 {
		f.Add(randomBody(rng), uint64(100+i))
	}
	servers := newDiffConns(f).servers
	f.Fuzz(func(t *testing.T, body []byte, seed uint64) {
		// Fresh connections: a failed input leaves its own out of step.
		dialDiff(t, servers).check(t, body, rand.New(rand.NewPCG(seed, 21)))
	})
}
