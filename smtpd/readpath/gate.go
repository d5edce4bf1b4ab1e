package readpath

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/emersion/go-smtp"
)

// Command lines are bounded; message content is not (issue 16).
//
// go-smtp applies Server.MaxLineLength to every byte it reads: command
// lines, DATA content and the start of BDAT chunks alike, so a body line
// over 2,000 characters was refused. RFC 5321 §4.5.3.1.4 bounds command
// lines (512 octets, plus what extensions add); content lines are the
// message's business (cleanup re-encodes those over 998 octets, RFC 5322
// §2.1.1). go-smtp has no setting for that, and a wrapper on the net.Conn
// cannot tell a command from content under TLS (it sees ciphertext), so the
// limit is moved one level up: the session puts Gate between go-smtp's
// per-connection line limiter and its source (the Tap's conn, or the
// tls.Conn above it) and turns go-smtp's own count off. Both are
// unexported fields of go-smtp's Conn (v0.26.0, lineLimitReader in
// lengthlimit_reader.go), reached by reflection; if they are not found
// (a go-smtp upgrade), go-smtp's limit stays in force as before, the DATA
// fast path keeps enforcing it, and TestGateInstalled fails.
//
// The gate follows the protocol on the bytes it hands to go-smtp:
//   - Command mode: it hands out complete lines only, each at most
//     CmdLineLimit octets with its CRLF. A longer one gets
//     ErrCmdLineTooLong and the connection ends (as go-smtp's own limit
//     did); go-smtp never sees a piece of it, so no truncated command is
//     ever executed. Memory: at most CmdLineLimit plus one read.
//   - After a DATA command line it hands out nothing more until go-smtp
//     reads again: if the session's Data was called meanwhile (dataNext),
//     content follows, decoded with go-smtp's own state machine (step,
//     dot.go) from the start of a line, and handed out unchecked up to
//     and including its end ".\r\n"; else DATA was refused and the bytes
//     are commands.
//   - After a BDAT command line that go-smtp will act on (its own parsing,
//     bdatSize), the chunk's bytes are handed out unchecked.
//
// BDAT chunks and DATA content are streamed by go-smtp (and by the fast
// path, fast.go) a buffer at a time: no line is ever held whole. Before the
// session exists (the greeting, and after STARTTLS until the next EHLO),
// go-smtp's own limit applies: MaxLineLength is the same CmdLineLimit. That
// one counts every byte go-smtp reads ahead, so a client that sends a long
// content line before it has the EHLO reply (which RFC 2920 §3.1 says it
// must wait for) can be cut with go-smtp's "500 5.4.0 Too long line".

// CmdLineLimit bounds a command line, CRLF included: go-smtp's default,
// RFC 5321 §4.5.3.1.4's 512 octets with room for the extensions' parameters
// (SIZE, BODY, DSN's ORCPT and ENVID) and AUTH initial responses.
const CmdLineLimit = 2000

// ErrCmdLineTooLong is the reply to a command line over CmdLineLimit
// (RFC 5321 §4.2.2: 500 "may include errors such as command line too
// long"; RFC 3463 5.5.2: syntax error). The connection is then closed: where
// the next command starts is not known.
var ErrCmdLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
	Message: "Line too long (RFC 5321 section 4.5.3.1.4: command lines at most " + strconv.Itoa(CmdLineLimit) + " octets here), closing connection"}

type gateMode uint8

const (
	gateCommand gateMode = iota
	gateAfterData
	gateContent
	gateChunk
)

// Gate is the source of go-smtp's line reader; session goroutine only.
type Gate struct {
	r       io.Reader // the tapped conn, or the tls.Conn over it
	w       io.Writer // the same connection, for ErrCmdLineTooLong
	goLimit *int      // go-smtp's LineLimit for this connection, kept at 0
	limit   int       // CmdLineLimit (tests: smaller)

	buf   []byte // read, not handed out yet: buf[off:]
	off   int
	ok    int // buf[off:off+ok] may be handed out
	mode  gateMode
	st    dotState // gateContent: go-smtp's DATA reader state
	chunk int64    // gateChunk: chunk bytes left
	err   error    // a read error to return once buf is handed out
	dead  bool     // a command line was too long: EOF from now on

	// dataNext is set by the session's Data (DATA, not BDAT): content
	// follows the DATA command line.
	dataNext bool
}

// llrFields finds go-smtp's per-connection line limiter: its source, its
// limit and its count. ok is false if go-smtp's layout is not the one
// this was written for.
func llrFields(c *smtp.Conn) (src *io.Reader, limit, count *int, ok bool) {
	if c == nil {
		return nil, nil, nil, false
	}
	v := reflect.ValueOf(c).Elem().FieldByName("lineLimitReader")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, nil, nil, false
	}
	s := v.Elem()
	r, l, n := s.FieldByName("R"), s.FieldByName("LineLimit"), s.FieldByName("curLineLength")
	if !r.IsValid() || r.Type() != reflect.TypeFor[io.Reader]() ||
		!l.IsValid() || l.Kind() != reflect.Int || !n.IsValid() || n.Kind() != reflect.Int {
		return nil, nil, nil, false
	}
	return (*io.Reader)(unsafe.Pointer(r.UnsafeAddr())), (*int)(unsafe.Pointer(l.UnsafeAddr())),
		(*int)(unsafe.Pointer(n.UnsafeAddr())), true
}

// GateAvailable reports whether go-smtp's Conn has the fields installGate
// needs.
var GateAvailable = func() bool {
	f, ok := reflect.TypeFor[smtp.Conn]().FieldByName("lineLimitReader")
	if !ok || f.Type.Kind() != reflect.Pointer || f.Type.Elem().Kind() != reflect.Struct {
		return false
	}
	t := f.Type.Elem()
	r, okR := t.FieldByName("R")
	l, okL := t.FieldByName("LineLimit")
	n, okN := t.FieldByName("curLineLength")
	return okR && okL && okN && r.Type == reflect.TypeFor[io.Reader]() &&
		l.Type.Kind() == reflect.Int && n.Type.Kind() == reflect.Int
}()

// installGate puts a Gate under go-smtp's line reader of c, unless one
// is there already (a new session after STARTTLS has a new reader). It
// returns the gate, or nil if go-smtp's layout is unknown.
func installGate(c *smtp.Conn) *Gate {
	src, limit, count, ok := llrFields(c)
	if !ok || !GateAvailable {
		return nil
	}
	if g, ok := (*src).(*Gate); ok {
		return g
	}
	w, ok := (*src).(io.Writer)
	if !ok {
		return nil
	}
	g := &Gate{r: *src, w: w, goLimit: limit, limit: CmdLineLimit}
	if t, ok := g.r.(Tapped); ok {
		t.ReadTap().gate = g // cleartext: the fast path reads below the gate
	}
	*src = g
	*limit, *count = 0, 0
	return g
}

func (g *Gate) Read(p []byte) (int, error) {
	// go-smtp restores its limit after each BDAT chunk: keep it off (it
	// counts after this returns, and only if the limit is set).
	*g.goLimit = 0
	if g.dead {
		return 0, io.EOF
	}
	switch {
	case g.mode == gateAfterData && g.ok == 0:
		// go-smtp reads again after the DATA line: content if Data ran,
		// from the start of a line.
		g.mode = gateCommand
		if g.dataNext {
			g.mode, g.st = gateContent, stBOL
		}
	case g.dataNext && g.mode == gateCommand:
		// Data runs, but the gate did not hand out the DATA line: go-smtp
		// had read it (and maybe some content) before the session put the
		// gate in, from a client that did not wait for the EHLO reply.
		// Where the content stands is not known: mid-line is the state
		// that cannot see an end that is not there (any CRLF syncs it),
		// and Reset ends the content at the latest.
		g.mode, g.st = gateContent, stData
	}
	g.dataNext = false
	n := 0
	for n < len(p) {
		if g.ok == 0 {
			if g.mode == gateAfterData {
				break // the DATA line is out: wait for go-smtp's next read
			}
			if !g.approve() {
				if n > 0 {
					break // go-smtp answers the lines before it first
				}
				g.dead = true
				e := ErrCmdLineTooLong
				fmt.Fprintf(g.w, "%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
				return 0, io.EOF
			}
			if g.ok == 0 {
				if n > 0 {
					break
				}
				if g.err != nil {
					err := g.err
					g.err = nil
					return 0, err
				}
				if err := g.fill(); err != nil {
					return 0, err
				}
				continue
			}
		}
		c := copy(p[n:], g.buf[g.off:g.off+g.ok])
		n += c
		g.off += c
		g.ok -= c
	}
	return n, nil
}

// reset runs with the session's Reset: go-smtp is done with a DATA
// transaction (or never began one), so what follows is commands, whatever
// the gate's decoding of the content concluded.
func (g *Gate) reset() {
	if g.mode == gateContent {
		g.mode = gateCommand
	}
	g.dataNext = false
}

// held reports whether the gate holds bytes it read but has not handed to
// go-smtp: the DATA fast path may not take over the socket then.
func (g *Gate) held() bool { return g.off < len(g.buf) }

// fill reads more from the connection. A read error with no bytes is
// returned; one with bytes waits until they are handed out.
func (g *Gate) fill() error {
	if g.off == len(g.buf) {
		g.buf, g.off = g.buf[:0], 0
	} else if g.off > 0 {
		g.buf = g.buf[:copy(g.buf, g.buf[g.off:])]
		g.off = 0
	}
	const chunk = 4096
	if cap(g.buf)-len(g.buf) < chunk {
		nb := make([]byte, len(g.buf), len(g.buf)+chunk)
		copy(nb, g.buf)
		g.buf = nb
	}
	n, err := g.r.Read(g.buf[len(g.buf):cap(g.buf)])
	g.buf = g.buf[:len(g.buf)+n]
	if n == 0 {
		return err
	}
	g.err = err
	return nil
}

// approve extends what may be handed out from the unapproved bytes
// buf[off+ok:], one step of the protocol. It reports false for a command
// line over the limit.
func (g *Gate) approve() bool {
	rest := g.buf[g.off+g.ok:]
	if len(rest) == 0 {
		return true
	}
	switch g.mode {
	case gateContent:
		n, end := scanEnd(&g.st, rest)
		g.ok += n
		if end {
			g.mode = gateCommand
		}
	case gateChunk:
		n := int(min(g.chunk, int64(len(rest))))
		g.ok += n
		if g.chunk -= int64(n); g.chunk == 0 {
			g.mode = gateCommand
		}
	case gateCommand:
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(rest) < g.limit
		}
		if i+1 > g.limit {
			return false
		}
		line := rest[:i+1]
		g.ok += len(line)
		if size, ok := bdatSize(line); ok {
			if size > 0 {
				g.mode, g.chunk = gateChunk, size
			}
		} else if isData(line) {
			g.mode = gateAfterData
		}
	}
	return true
}

// scanEnd advances st over b, go-smtp's DATA reader's way, and returns
// how many bytes belong to the content (its end ".\r\n" included) and
// whether the end was reached.
func scanEnd(st *dotState, b []byte) (int, bool) {
	i := 0
	for i < len(b) {
		if *st == stData {
			j := bytes.IndexByte(b[i:], '\r')
			if j < 0 {
				return len(b), false
			}
			i += j // the CR is stepped over below
		}
		*st, _ = step(*st, b[i])
		i++
		if *st == stEOF {
			return i, true
		}
	}
	return i, false
}

// cmdOf splits a command line as go-smtp's parseCmd does, for the two
// commands the gate follows; ok is false for anything else.
func cmdOf(line []byte) (cmd, arg string, ok bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if strings.HasPrefix(strings.ToUpper(s), "STARTTLS") {
		return "", "", false
	}
	switch {
	case len(s) == 4:
		return strings.ToUpper(s), "", true
	case len(s) < 6 || s[4] != ' ':
		return "", "", false
	}
	return strings.ToUpper(s[:4]), strings.TrimSpace(s[5:]), true
}

// isData reports whether go-smtp takes line for DATA without arguments
// (handleData answers 354 only then, and only if Data may be called).
func isData(line []byte) bool {
	cmd, arg, ok := cmdOf(line)
	return ok && cmd == "DATA" && arg == ""
}

// bdatSize reports whether go-smtp takes line for a BDAT command whose
// chunk follows (handleBdat reads or discards size bytes after every BDAT
// whose arguments parse, whatever it answers).
func bdatSize(line []byte) (int64, bool) {
	cmd, arg, ok := cmdOf(line)
	if !ok || cmd != "BDAT" {
		return 0, false
	}
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false
	}
	return int64(size), true
}
