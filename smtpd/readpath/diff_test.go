package readpath

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The differential test: the same client byte streams through go-smtp
// itself and through go-smtp with this package wired in as smtpd wires it
// (Attach, Data, Content, Reset; a Tap under go-smtp's reader), both with
// the same trivial backend, must give the same messages and replies.
//
// Deliberate differences, the only ones allowed:
//   - A command line over CmdLineLimit: the seam answers
//     ErrCmdLineTooLong and closes; go-smtp (MaxLineLength 0, so that
//     content lines of any length pass, as relayd takes them) executes
//     it. From there on the seam's transcript ends, and only what came
//     before is compared (TestLongCommandLineDiffers checks the refusal
//     itself).
//   - An unterminated command line at the end of the stream: go-smtp
//     executes it at EOF, the Gate hands out whole lines only, so the
//     seam does not (readpath's TestCmdGateWholeLines). go-smtp's
//     transcript may then have more replies at its end, and one more
//     message (a DATA that meets EOF at once).

// diffMaxBytes is both servers' MaxMessageBytes: above the ~100 KB line,
// below what a stream with two of them sends.
const diffMaxBytes = 150_000

// recorder is the trivial backend: each message's bytes (or its read
// error), per session, keyed by the EHLO name, in the order the
// messages began (go-smtp runs a BDAT message's Data on a goroutine of
// its own, which may end after the session).
type recorder struct {
	seam     bool
	switches atomic.Int64
	bigData  atomic.Int64 // DATA (not BDAT) messages over go-smtp's 4 KB buffer
	mu       sync.Mutex
	msgs     map[string][]string
	busy     map[string]int // sessions not logged out plus Data calls not returned
}

func (b *recorder) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &recSession{b: b, name: c.Hostname()}
	if b.seam {
		s.rp = Attach(c)
		s.rp.Switches = &b.switches
	}
	b.mu.Lock()
	b.busy[s.name]++
	b.mu.Unlock()
	return s, nil
}

// messages waits (up to 5 s) until the sessions named name are over,
// then returns their messages.
func (b *recorder) messages(t testing.TB, name string) []string {
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		busy, m := b.busy[name], b.msgs[name]
		b.mu.Unlock()
		if busy == 0 {
			return m
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: the session is not over 5 s after the connection", name)
			return m
		}
	}
}

type recSession struct {
	b    *recorder
	name string
	rp   *Session // nil: go-smtp's own reading
}

func (s *recSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *recSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *recSession) Reset()                               { s.rp.Reset() }

func (s *recSession) Logout() error {
	s.b.mu.Lock()
	s.b.busy[s.name]--
	s.b.mu.Unlock()
	return nil
}

func (s *recSession) Data(r io.Reader) error {
	s.b.mu.Lock()
	s.b.busy[s.name]++
	seq := len(s.b.msgs[s.name])
	s.b.msgs[s.name] = append(s.b.msgs[s.name], "")
	s.b.mu.Unlock()
	_, bdat := r.(*io.PipeReader)
	if s.rp != nil {
		s.rp.Data(r)
		var finish func()
		r, _, finish = s.rp.Content(r, diffMaxBytes, nil)
		defer finish()
	}
	b, err := io.ReadAll(r)
	if !bdat && len(b) > 8<<10 {
		s.b.bigData.Add(1)
	}
	rec := string(b)
	if err != nil {
		rec = fmt.Sprintf("%q then error %v", b, err)
	}
	s.b.mu.Lock()
	s.b.msgs[s.name][seq] = rec
	s.b.busy[s.name]--
	s.b.mu.Unlock()
	return err
}

// lingerConn closes as a careful peer does: replies sent (FIN), then the
// client's rest read and dropped until it closes too, so that a close with
// unread input (a RST) never loses a reply the client has not read yet.
// Both servers get it.
type lingerConn struct{ net.Conn }

func (c lingerConn) Close() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.CloseWrite()
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, tc)
	}
	return c.Conn.Close()
}

// tapConn is smtpd's idleConn reduced to the seam: reads through a Tap.
type tapConn struct {
	lingerConn
	tap *Tap
}

func (c *tapConn) Read(p []byte) (int, error) { return c.tap.Read(p) }
func (c *tapConn) ReadTap() *Tap              { return c.tap }

type diffListener struct {
	net.Listener
	seam bool
}

func (l diffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || !l.seam {
		return lingerConn{c}, err
	}
	tc := &tapConn{lingerConn: lingerConn{c}}
	limit := 0 // content lines unbounded once the Gate is in, as smtpd's dataLineLimit
	if !GateAvailable {
		limit = CmdLineLimit
	}
	tc.tap = NewTap(c, limit)
	return tc, nil
}

type diffServer struct {
	addr string
	be   *recorder
}

func startDiff(t testing.TB, seam bool) *diffServer {
	be := &recorder{seam: seam, msgs: map[string][]string{}, busy: map[string]int{}}
	s := smtp.NewServer(be)
	s.Domain = "diff.test"
	s.MaxMessageBytes = diffMaxBytes
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.MaxLineLength = 0 // go-smtp itself: content lines of any length
	if seam {
		s.MaxLineLength = CmdLineLimit // as smtpd: before the Gate is in
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(diffListener{l, seam})
	t.Cleanup(func() { s.Close() })
	return &diffServer{addr: l.Addr().String(), be: be}
}

// run sends EHLO name, waits for its reply (RFC 2920 §3.1), then writes
// rest in the pieces cuts gives, half-closes, and returns every reply
// line the server sent.
func (d *diffServer) run(t testing.TB, name string, rest []byte, cuts []int) []string {
	c, err := net.DialTimeout("tcp", d.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	br := bufio.NewReader(c)
	var lines []string
	readReply := func() bool {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return false
			}
			lines = append(lines, strings.TrimRight(l, "\r\n"))
			if len(l) < 4 || l[3] != '-' {
				return true
			}
		}
	}
	if !readReply() {
		t.Fatalf("%s: no greeting", name)
	}
	fmt.Fprintf(c, "EHLO %s\r\n", name)
	if !readReply() {
		t.Fatalf("%s: no EHLO reply", name)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for readReply() {
		}
	}()
	pos := 0
	for _, n := range cuts {
		if pos >= len(rest) {
			break
		}
		end := min(len(rest), pos+n)
		if _, err := c.Write(rest[pos:end]); err != nil {
			break // the server closed: its replies are still read
		}
		pos = end
		if n%3 == 0 {
			time.Sleep(time.Millisecond) // let the server's read end here
		}
	}
	if pos < len(rest) {
		c.Write(rest[pos:])
	}
	c.(*net.TCPConn).CloseWrite()
	<-done
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%s: the server took %v to end the session after the client's last byte: %q", name, d, clip(rest))
	}
	return lines
}

// gateRefusal is the seam's one deliberately different reply.
var gateRefusal = fmt.Sprintf("%d %d.%d.%d %s", ErrCmdLineTooLong.Code, ErrCmdLineTooLong.EnhancedCode[0],
	ErrCmdLineTooLong.EnhancedCode[1], ErrCmdLineTooLong.EnhancedCode[2], ErrCmdLineTooLong.Message)

// compare fails unless the seam's transcript and messages are go-smtp's,
// but for the deliberate difference (reported as cut).
func compare(t testing.TB, name string, rest []byte, goR, seamR, goM, seamM []string) (cut bool) {
	t.Helper()
	n := len(seamR)
	for i, l := range seamR {
		if l == gateRefusal {
			if i != len(seamR)-1 {
				t.Errorf("%s: the seam replied after its refusal: %q", name, seamR[i:])
			}
			if !hasLongLine(rest) {
				t.Errorf("%s: the seam refused a command line, but the stream has no line over %d", name, CmdLineLimit)
			}
			n, cut = i, true
			break
		}
	}
	if cut {
		goR = goR[:min(n, len(goR))]
		if len(seamM) <= len(goM) {
			goM = goM[:len(seamM)]
		}
		seamR = seamR[:n]
	}
	if !cut && len(rest) > 0 && rest[len(rest)-1] != '\n' {
		if len(goR) > len(seamR) && equalLines(goR[:len(seamR)], seamR) {
			goR = goR[:len(seamR)]
		}
		if len(goM) == len(seamM)+1 {
			goM = goM[:len(seamM)]
		}
	}
	if !equalLines(goR, seamR) {
		t.Errorf("%s: replies differ for %q\n go-smtp: %q\n    seam: %q", name, clip(rest), goR, seamR)
	}
	if !equalLines(goM, seamM) {
		t.Errorf("%s: messages differ for %q\n go-smtp: %q\n    seam: %q", name, clip(rest), clipAll(goM), clipAll(seamM))
	}
	return cut
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hasLongLine(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(l)+1 > CmdLineLimit {
			return true
		}
	}
	return false
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:300]) + fmt.Sprintf("...(%d bytes)...", len(b)-600) + string(b[len(b)-300:])
	}
	return string(b)
}

func clipAll(m []string) []string {
	out := make([]string, len(m))
	for i, s := range m {
		out[i] = clip([]byte(s))
	}
	return out
}

// randomStream is a client's stream after EHLO: transactions with DATA
// or BDAT, pipelined (go-smtp offers PIPELINING and CHUNKING), content
// with dots, bare CR and LF, long lines, smuggling payloads, ends that
// are right, wrong or missing; now and then a stray command.
func randomStream(rnd *rand.Rand) []byte {
	var b bytes.Buffer
	hugeLeft := rnd.IntN(4) == 0 // at most one ~100 KB line, in a quarter of the streams
	for range 1 + rnd.IntN(4) {
		switch k := rnd.IntN(20); {
		case k < 12:
			b.WriteString("MAIL FROM:<a@example.com>\r\n")
			for range 1 + rnd.IntN(2) {
				b.WriteString("RCPT TO:<b@example.org>\r\n")
			}
			if rnd.IntN(12) == 0 {
				b.WriteString("RSET\r\n") // DATA refused: its content is commands
			}
			b.WriteString("DATA\r\n")
			b.WriteString(randomContent(rnd, &hugeLeft))
		case k < 15:
			b.WriteString("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
			for i, n := 0, 1+rnd.IntN(3); i < n; i++ {
				chunk := randomContent(rnd, &hugeLeft)
				last := ""
				if i == n-1 {
					last = " LAST"
				}
				fmt.Fprintf(&b, "BDAT %d%s\r\n%s", len(chunk), last, chunk)
			}
			if rnd.IntN(3) == 0 {
				b.WriteString("DATA\r\n") // DATA after BDAT: go-smtp's path
				b.WriteString(randomContent(rnd, &hugeLeft))
			}
		case k < 16:
			fmt.Fprintf(&b, "NOOP %s\r\n", strings.Repeat("n", rnd.IntN(CmdLineLimit-8)))
		case k < 17:
			b.WriteString("RSET\nNOOP\r\n") // bare LF ends a command line in go-smtp
		case k < 18:
			b.WriteString("DATA now\r\n") // 501, then what follows is commands
		default:
			b.WriteString("NOOP\r\n")
		}
	}
	if rnd.IntN(8) != 0 {
		b.WriteString("QUIT\r\n")
	}
	return b.Bytes()
}

// smuggling are the payloads of SMTP smuggling and its relatives: ends
// of data that are not <CRLF>.<CRLF>, and one that is, with a second
// transaction behind it.
var smuggling = []string{
	"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", ".\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nsmuggled\r\n",
	"\r\n..\r\n", "\r\n.\rX\r\n", "\r\r\n.\r\n", "\n..\n", ".\r\r\n", "\r\n\r\n.\r\n",
}

// randomContent is DATA content biased towards what is hard, usually
// ended by "\r\n.\r\n", sometimes by nothing (it runs into what follows).
func randomContent(rnd *rand.Rand, hugeLeft *bool) string {
	var b strings.Builder
	for range rnd.IntN(40) {
		switch k := rnd.IntN(24); {
		case k < 6:
			b.WriteString(strings.Repeat("Some text of a line ", 1+rnd.IntN(40)))
		case k < 8:
			b.WriteString(".dot at the start")
		case k < 9:
			b.WriteString("..")
		case k < 10:
			b.WriteString(".")
		case k < 11:
			b.WriteString("bare\rCR")
		case k < 12:
			b.WriteString("bare\nLF")
		case k < 13:
			b.WriteString("\r\r\n")
		case k < 15:
			b.WriteString(strings.Repeat("L", 1+rnd.IntN(5000)))
		case k < 16 && *hugeLeft:
			*hugeLeft = false
			b.WriteString(strings.Repeat("QUJD", 25_000))
		case k < 19:
			b.WriteString(smuggling[rnd.IntN(len(smuggling))])
		}
		switch rnd.IntN(10) {
		case 0:
			b.WriteString("\n")
		case 1:
			b.WriteString("\r")
		default:
			b.WriteString("\r\n")
		}
	}
	switch rnd.IntN(14) {
	case 0: // no end: the content runs on
	case 1:
		b.WriteString("\n.\n")
	default:
		if s := b.String(); s != "" && !strings.HasSuffix(s, "\r\n") {
			b.WriteString("\r\n")
		}
		b.WriteString(".\r\n")
	}
	return b.String()
}

// randomCuts splits a stream into writes: mostly small and irregular, so
// that CRLF, ".\r\n" and command lines are split across writes and the
// server's reads end anywhere.
func randomCuts(rnd *rand.Rand, n int) []int {
	var cuts []int
	for total := 0; total < n; {
		c := 1 + rnd.IntN(64)
		if rnd.IntN(4) == 0 {
			c = 1 + rnd.IntN(40_000)
		}
		cuts = append(cuts, c)
		total += c
	}
	return cuts
}

// TestSeamVsGoSMTP: 300 random streams through go-smtp and through the
// seam, same messages, same replies (see the deliberate differences
// above), and the fast path does take over.
func TestSeamVsGoSMTP(t *testing.T) {
	gs, ss := startDiff(t, false), startDiff(t, true)
	streams := 300
	if testing.Short() {
		streams = 60
	}
	var cuts, messages atomic.Int64
	var wg sync.WaitGroup
	work := make(chan int)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rnd := rand.New(rand.NewPCG(21, uint64(i)))
				rest := randomStream(rnd)
				c := randomCuts(rnd, len(rest))
				name := fmt.Sprintf("s%d", i)
				goR := gs.run(t, name, rest, c)
				seamR := ss.run(t, name, rest, c)
				goM, seamM := gs.be.messages(t, name), ss.be.messages(t, name)
				if compare(t, name, rest, goR, seamR, goM, seamM) {
					cuts.Add(1)
				}
				messages.Add(int64(len(goM)))
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Minute)
	sent := 0
	for ; sent < streams && !t.Failed() && time.Now().Before(deadline); sent++ {
		work <- sent
	}
	close(work)
	wg.Wait()
	sw := ss.be.switches.Load()
	t.Logf("%d streams, %d messages (%d DATA over 8 KB), %d fast-path hand-overs, %d cut by the command line limit",
		sent, messages.Load(), gs.be.bigData.Load(), sw, cuts.Load())
	if gs.be.switches.Load() != 0 {
		t.Error("go-smtp's side took the fast path")
	}
	// A DATA message over go-smtp's buffer makes it read the Tap again
	// while armed: most of those must be handed over.
	if big := gs.be.bigData.Load(); big < 20 || sw < big/2 {
		t.Errorf("the fast path took over %d times for %d DATA messages over 8 KB: the seam is barely tested", sw, big)
	}
	if cuts.Load() > int64(streams)/5 {
		t.Errorf("%d of %d streams cut by the command line limit: too few compared whole", cuts.Load(), streams)
	}
}

// FuzzSeamVsGoSMTP: any stream after EHLO, in any pieces.
func FuzzSeamVsGoSMTP(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n",
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\n.\nMAIL FROM:<evil@example.net>\r\n.\r\n",
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\nRCPT TO:<c@example.org>\r\n\n.\r\n.\r\nQUIT\r\n",
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\r\n.\r\n.\r\nNOOP\r\n",
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" + strings.Repeat("y", 5000) + "\r\n.\r\nNOOP\r\n",
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 9\r\n.\r\nabc\r\nBDAT 3 LAST\r\n.\r\nDATA\r\n",
		"DATA\r\nNOOP\r\n.\r\nQUIT\r\n",
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\rX\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\r\n",
	} {
		f.Add([]byte(s), []byte{3, 7, 200, 1})
	}
	gs, ss := startDiff(f, false), startDiff(f, true)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, rest, sizes []byte) {
		if len(rest) > 1<<20 {
			return
		}
		var cuts []int
		for i, total := 0, 0; total < len(rest) && len(sizes) > 0; i++ {
			c := int(sizes[i%len(sizes)]) + 1
			cuts = append(cuts, c)
			total += c
		}
		name := fmt.Sprintf("f%d", n.Add(1))
		goR := gs.run(t, name, rest, cuts)
		seamR := ss.run(t, name, rest, cuts)
		compare(t, name, rest, goR, seamR, gs.be.messages(t, name), ss.be.messages(t, name))
	})
}

// The deliberate difference itself: a command line over CmdLineLimit
// gets 500 5.5.2 from the seam and the connection ends, before go-smtp
// sees any of it; go-smtp (MaxLineLength 0) executes it.
func TestLongCommandLineDiffers(t *testing.T) {
	gs, ss := startDiff(t, false), startDiff(t, true)
	long := "NOOP " + strings.Repeat("x", CmdLineLimit) + "\r\n"
	rest := []byte("NOOP\r\n" + long + "NOOP\r\nQUIT\r\n")
	goR := gs.run(t, "long", rest, nil)
	seamR := ss.run(t, "long", rest, nil)
	if n := len(goR); n < 3 || !strings.HasPrefix(goR[n-3], "250 ") || !strings.HasPrefix(goR[n-2], "250 ") {
		t.Errorf("go-smtp: %q, want the long NOOP taken", goR)
	}
	if n := len(seamR); n < 2 || seamR[n-1] != gateRefusal || !strings.HasPrefix(seamR[n-2], "250 ") {
		t.Errorf("seam: %q, want 250 then %q and the end", seamR, gateRefusal)
	}
	if !strings.HasPrefix(gateRefusal, "500 5.5.2 ") {
		t.Errorf("the refusal is %q", gateRefusal)
	}
}
