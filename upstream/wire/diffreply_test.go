package wire

import (
	"bufio"
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

// Differential tests of the reply reader: a scripted server answers MAIL,
// n RCPTs, DATA and (after a 354) the final dot with random replies, cut
// into pieces written separately; the seam sends the commands in one
// pipelined group and reads the replies, go-smtp's Client sends them one
// at a time, and each command must get the same result from both.

// Command kinds, in a transaction's order.
const (
	kMail = iota
	kRcpt
	kData
	kDot
)

// goAccepts is what go-smtp's Client takes as success for each command
// (the expectCode of its cmd and readResponse calls): 250 to MAIL and the
// final dot, 25x to RCPT, 354 to DATA. Upstream's pipelined path takes any
// 2xx to MAIL, RCPT and the dot: the replies where the two differ (220,
// 251 to MAIL, 260 to RCPT, ...) are in the scripts, so a change of these
// rules in go-smtp fails this test.
func goAccepts(kind, code int) bool {
	switch kind {
	case kRcpt:
		return code/10 == 25
	case kData:
		return code == 354
	}
	return code == 250
}

// script is one transaction's replies.
type script struct {
	rcpts   int
	replies [][]byte // MAIL, RCPTs, DATA, dot
	cuts    [][]int  // where each reply is cut into separate writes
	pause   bool     // sleep briefly between the pieces
}

func (s *script) kind(i int) int {
	switch {
	case i == 0:
		return kMail
	case i <= s.rcpts:
		return kRcpt
	case i == s.rcpts+1:
		return kData
	}
	return kDot
}

func (s *script) dataAccepted() bool {
	return strings.HasPrefix(string(s.replies[s.rcpts+1]), "354 ") || strings.HasPrefix(string(s.replies[s.rcpts+1]), "354-")
}

var replyCodes = [][]int{
	kMail: {250, 250, 250, 250, 251, 252, 220, 421, 450, 451, 452, 503, 550, 552, 553, 554, 354, 199},
	kRcpt: {250, 250, 250, 250, 251, 252, 259, 260, 421, 450, 451, 452, 503, 550, 551, 552, 553},
	kData: {354, 354, 354, 354, 354, 250, 355, 451, 503, 554, 421},
	kDot:  {250, 250, 250, 251, 451, 452, 552, 554, 421},
}

var enhancedCodes = []string{"", "", "%d.0.0", "%d.1.1", "%d.7.1", "2.0.0", "5.1.1", "4.4.2", "2.0", "2.0.0.0", "+%d.0.0", "%d.-1.0", "x.1.1", "%d.01.001", "99999999999999999999.0.0", "%d.0.0;"}

// randomReply is a reply to a command of kind: one to five lines, with or
// without an enhanced code (proper, of another class, or malformed), on
// every line or only the first, text of up to 60 octets or, now and then,
// a line of 1990 to 2048 octets (the longest upstream's replyConn lets
// through; go-smtp's Client refuses those over GoSMTPLineLimit), middle
// lines that are not continuation lines of this code, and rarely a first
// line textproto cannot parse.
func randomReply(rng *rand.Rand, kind int) []byte {
	codes := replyCodes[kind]
	code := codes[rng.IntN(len(codes))]
	if rng.IntN(80) == 0 {
		return []byte([]string{"25\r\n", "2x0 bad code\r\n", "250_no separator\r\n", "\r\n"}[rng.IntN(4)])
	}
	enh := enhancedCodes[rng.IntN(len(enhancedCodes))]
	if strings.Contains(enh, "%d") {
		enh = fmt.Sprintf(enh, code/100)
	}
	every := rng.IntN(2) == 0
	n := 1
	if rng.IntN(3) == 0 {
		n += rng.IntN(5)
	}
	var b strings.Builder
	for i := range n {
		last := i == n-1
		if i > 0 && rng.IntN(10) == 0 {
			// Not a line of this reply's code, after the first: textproto
			// keeps it as text.
			b.WriteString([]string{"junk line\r\n", "599 5.0.0 other code\r\n", "25\r\n"}[rng.IntN(3)])
		}
		line := fmt.Sprintf("%d", code)
		if n == 1 && rng.IntN(30) == 0 {
			// A code alone (RFC 5321 §4.2 allows it; textproto does not,
			// and as the last of several lines it waits for more).
			b.WriteString(line + "\r\n")
			continue
		}
		if last {
			line += " "
		} else {
			line += "-"
		}
		if enh != "" && (i == 0 || every) {
			line += enh + " "
		}
		if rng.IntN(40) == 0 {
			target := 1990 + rng.IntN(59) // octets before the LF
			line += strings.Repeat("w", max(target-len(line)-1, 0))
		} else {
			line += strings.Repeat("text ", 12)[:rng.IntN(60)]
		}
		b.WriteString(line + "\r\n")
	}
	return []byte(b.String())
}

func randomScript(rng *rand.Rand) *script {
	s := &script{rcpts: 1 + rng.IntN(5), pause: rng.IntN(3) == 0}
	for i := 0; i < s.rcpts+3; i++ {
		r := randomReply(rng, s.kind(i))
		s.replies = append(s.replies, r)
		var cuts []int
		// A reply with a long line goes in one write: go-smtp's line limit
		// counts per read (see lineLimit).
		for range rng.IntN(4) * min(1, 1900/len(r)) {
			cuts = append(cuts, rng.IntN(len(r)+1))
		}
		s.cuts = append(s.cuts, cuts)
	}
	return s
}

// lineScript has a MAIL reply line of exactly n octets before its LF.
func lineScript(n int) *script {
	r := "250 " + strings.Repeat("l", n-5) + "\r\n"
	return &script{rcpts: 1, replies: [][]byte{[]byte(r), []byte("250 ok\r\n"), []byte("354 go\r\n"), []byte("250 queued\r\n")}, cuts: make([][]int, 4)}
}

// serve answers one connection from s: greeting, EHLO with PIPELINING,
// then each command's reply. Replies to commands that are already
// buffered are held back and written together with the next, as a
// pipelining server does; each is written in the pieces its cuts make.
func (s *script) serve(conn net.Conn) error {
	defer conn.Close()
	c := timedConn{conn}
	r := bufio.NewReader(c)
	write := func(b string) error { _, err := io.WriteString(c, b); return err }
	if err := write("220 script.wire.test ESMTP\r\n"); err != nil {
		return nil
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "EHLO ") {
		return fmt.Errorf("got %q, %v, want EHLO", line, err)
	}
	if err := write("250-script.wire.test\r\n250 PIPELINING\r\n"); err != nil {
		return nil
	}
	var held []int
	flush := func() error {
		for _, i := range held {
			rep, at := s.replies[i], 0
			cuts := append([]int(nil), s.cuts[i]...)
			cuts = append(cuts, len(rep))
			for _, cut := range cuts {
				if cut < at {
					continue
				}
				if err := write(string(rep[at:cut])); err != nil {
					return err
				}
				at = cut
				if s.pause {
					time.Sleep(200 * time.Microsecond)
				}
			}
		}
		held = held[:0]
		return nil
	}
	want := []string{"MAIL FROM:"}
	for range s.rcpts {
		want = append(want, "RCPT TO:")
	}
	want = append(want, "DATA")
	for i, w := range want {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil // the client stopped after an error
		}
		if !strings.HasPrefix(line, w) {
			return fmt.Errorf("command %d: got %q, want %s", i, line, w)
		}
		held = append(held, i)
		if r.Buffered() == 0 {
			if err := flush(); err != nil {
				return nil
			}
		}
	}
	if err := flush(); err != nil || !s.dataAccepted() {
		return nil
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil
		}
		if line == ".\r\n" {
			break
		}
	}
	held = append(held, len(s.replies)-1)
	if err := flush(); err != nil {
		return nil
	}
	io.Copy(io.Discard, r) // until the client closes
	return nil
}

// replyServer serves one script per connection, in order.
type replyServer struct {
	l net.Listener
}

func newReplyServer(t testing.TB) *replyServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &replyServer{l: l}
}

// dial connects a go-smtp Client, past EHLO, to a connection served from
// s; done reports the server side's verdict once the client has closed.
func (rs *replyServer) dial(t testing.TB, s *script) (c *smtp.Client, conn net.Conn, done <-chan error) {
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		sc, err := rs.l.Accept()
		if err != nil {
			ch <- err
			return
		}
		ch <- s.serve(sc)
	}()
	raw, err := net.DialTimeout("tcp", rs.l.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	conn = timedConn{raw}
	c = smtp.NewClient(conn)
	if err := c.Hello("client.wire.test"); err != nil {
		t.Fatal(err)
	}
	return c, conn, ch
}

const scriptBody = "Subject: s\r\n\r\n.hi\r\n"

// result is one command's outcome in go-smtp's terms.
func result(err error) string {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se):
		return fmt.Sprintf("smtp: %d %v %q", se.Code, se.EnhancedCode, se.Message)
	}
	return "error: " + err.Error()
}

// viaGoSMTP runs s's commands one at a time through go-smtp's Client,
// up to the first error that is not a reply.
func viaGoSMTP(t testing.TB, rs *replyServer, s *script) []string {
	c, conn, done := rs.dial(t, s)
	var out []string
	add := func(err error) bool {
		out = append(out, result(err))
		return !strings.HasPrefix(out[len(out)-1], "error")
	}
	ok := add(c.Mail("a@wire.test", nil))
	for i := 0; ok && i < s.rcpts; i++ {
		ok = add(c.Rcpt(fmt.Sprintf("r%d@wire.test", i), nil))
	}
	if ok {
		dc, err := c.Data()
		if add(err) && err == nil {
			if _, err := io.WriteString(dc, scriptBody); err != nil {
				t.Fatal(err)
			}
			out = append(out, describe(dc.CloseWithResponse()))
		}
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("go-smtp side: %v", err)
	}
	return out
}

// viaSeam sends s's commands in one group through the seam and reads the
// replies, up to the first error; the seam's reader must hold nothing
// after the last reply.
func viaSeam(t testing.TB, rs *replyServer, s *script) []string {
	_, conn, done := rs.dial(t, s)
	w := New(conn)
	cmds := []string{"MAIL FROM:<a@wire.test>"}
	for i := range s.rcpts {
		cmds = append(cmds, fmt.Sprintf("RCPT TO:<r%d@wire.test>", i))
	}
	cmds = append(cmds, "DATA")
	if err := w.Send(cmds...); err != nil {
		t.Fatal(err)
	}
	var out []string
	clean := true
	for i := 0; i < len(s.replies); i++ {
		kind := s.kind(i)
		r, err := w.Reply()
		if err != nil {
			out = append(out, "error: "+err.Error())
			clean = false
			break
		}
		switch {
		case kind == kDot && r.Code == 250:
			out = append(out, "ok: "+r.Text)
		case goAccepts(kind, r.Code):
			out = append(out, "ok")
		default:
			out = append(out, result(r.SMTPError()))
		}
		if kind == kData {
			if r.Code != 354 {
				break
			}
			if err := w.WriteBody(strings.NewReader(scriptBody), int64(len(scriptBody))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := w.r.R.Buffered(); clean && n > 0 {
		t.Errorf("the seam's reader holds %d octets after the last reply; replies %q", n, s.replies)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("seam side: %v", err)
	}
	return out
}

func checkScript(t testing.TB, rs *replyServer, s *script) {
	t.Helper()
	want, got := viaGoSMTP(t, rs, s), viaSeam(t, rs, s)
	// The seam reads every reply of the group; go-smtp stops at DATA's
	// refusal, the seam then too (no body, no dot).
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		var b strings.Builder
		for i := range max(len(got), len(want)) {
			g, w := "-", "-"
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			mark := " "
			if g != w {
				mark = "*"
			}
			fmt.Fprintf(&b, "%s command %d reply %.120q\n    seam:    %.200s\n    go-smtp: %.200s\n", mark, i, replyAt(s, i), g, w)
		}
		t.Fatalf("seam and go-smtp disagree:\n%s", b.String())
	}
}

func replyAt(s *script, i int) string {
	if i < len(s.replies) {
		return string(s.replies[i])
	}
	return ""
}

// TestWireRepliesDifferential runs fixed scripts (reply lines at go-smtp's
// limit) and random ones: at most replyCases, for at most replyTime.
func TestWireRepliesDifferential(t *testing.T) {
	const replyCases, replyTime = 300, 10 * time.Second
	rs := newReplyServer(t)
	for _, n := range []int{GoSMTPLineLimit - 2, GoSMTPLineLimit - 1, GoSMTPLineLimit, GoSMTPLineLimit + 1, 2048} {
		checkScript(t, rs, lineScript(n))
	}
	rng := rand.New(rand.NewPCG(21, 3))
	start, n := time.Now(), 0
	for ; n < replyCases && time.Since(start) < replyTime; n++ {
		checkScript(t, rs, randomScript(rng))
	}
	if n < 20 {
		t.Fatalf("only %d random scripts in %v", n, replyTime)
	}
	t.Logf("%d random scripts", n)
}
