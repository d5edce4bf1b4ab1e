package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"relayd/cleanup"
)

// crIntake refuses a bare CR as cleanup does, while the content streams
// (cleanup fails at the first CR not followed by LF, not at the end).
type crIntake struct{ fakeIntake }

func (c *crIntake) Submit(ctx context.Context, sub *cleanup.Submission, r io.Reader) (string, error) {
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 4096)
		prevCR := false
		for {
			n, err := r.Read(buf)
			for _, b := range buf[:n] {
				if prevCR && b != '\n' {
					pw.CloseWithError(cleanup.ErrBareCR)
					return
				}
				prevCR = b == '\r'
			}
			pw.Write(buf[:n])
			if err != nil {
				if err == io.EOF && prevCR {
					err = cleanup.ErrBareCR
				}
				pw.CloseWithError(err)
				return
			}
		}
	}()
	id, err := c.fakeIntake.Submit(ctx, sub, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	return id, err
}

// talk sends script at once and returns the replies received before the
// server closes, or until wait passes (the client does not close: a server
// that waits for more content leaves it hanging).
func talk(t *testing.T, addr, script string, wait time.Duration) (replies string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, script)
	conn.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(conn)
	ne, timeout := err.(net.Error)
	return string(b), !(timeout && ne.Timeout())
}

// TestDataEdgeCasesBothPaths feeds the same byte streams through go-smtp's
// DATA path and the fast path (readpath). RFC 5321 §4.1.1.4: only
// <CRLF>.<CRLF> ends the content; §2.3.8: CR and LF only as CRLF, so a
// bare CR is refused (550 5.6.0). A bare CR leaves the framing uncertain
// ("x\r\r\n.\r\n": go-smtp's reader does not end there), so after refusing
// it the server closes the connection rather than read on for an end that
// may never come (the client hung, and its next pipelined transaction was
// swallowed as content): both paths then give the same replies.
func TestDataEdgeCasesBothPaths(t *testing.T) {
	const next = "MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.org>\r\nDATA\r\nsecond\r\n.\r\n"
	cases := []struct {
		name, content string
		first         string // the reply to the first message's content
		accepted      []string
	}{
		{"plain", "ok\r\n.\r\n", "250 ", []string{"ok\r\n", "second\r\n"}},
		{"dot-stuffed", "..x\r\n.\r\n", "250 ", []string{".x\r\n", "second\r\n"}},
		{"bare CR in a line", "a\rb\r\n.\r\n", "550 5.6.0", nil},
		{"CR CR LF before the end", "x\r\r\n.\r\n", "550 5.6.0", nil},
		// go-smtp's reader drops ".\r" when no LF follows (a bare CR
		// after a dot); it cannot be seen after the fact on its TLS
		// path, so both paths keep that: the line "X" arrives as is.
		{"dot CR X", "a\r\n.\rX\r\n.\r\n", "250 ", []string{"a\r\nX\r\n", "second\r\n"}},
	}
	for _, slowData := range []bool{true, false} {
		for _, c := range cases {
			for _, pipelined := range []bool{true, false} {
				e := serve(t, Relay, func(cfg *Config) { cfg.IdleTimeout = 30 * time.Second })
				ci := &crIntake{}
				e.srv.intake = ci
				e.srv.slowData = slowData
				script := "EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" + c.content
				want := c.accepted
				if pipelined {
					script += next // a second transaction behind the first
				} else if len(want) > 0 {
					want = want[:1]
				}
				script += "QUIT\r\n"
				replies, closed := talk(t, e.addr, script, 5*time.Second)
				path := map[bool]string{true: "go-smtp's path", false: "fast path"}[slowData] + map[bool]string{true: ", pipelined", false: ""}[pipelined]
				if !closed {
					t.Errorf("%s, %s: the server left the client hanging; replies: %q", path, c.name, replies)
				}
				lines := strings.Split(replies, "\r\n")
				var afterData []string
				for i, l := range lines {
					if strings.HasPrefix(l, "354 ") && i+1 < len(lines) {
						afterData = append(afterData, lines[i+1])
					}
				}
				if len(afterData) == 0 || !strings.HasPrefix(afterData[0], c.first) {
					t.Errorf("%s, %s: reply to the content %q, want %q; all: %q", path, c.name, afterData, c.first, replies)
				}
				ci.mu.Lock()
				got := append([]string(nil), ci.data...)
				ci.mu.Unlock()
				if c.first != "250 " && pipelined && len(got) == 1 && got[0] == "second\r\n" {
					// The second transaction was read with the first
					// (framed, after "a\rb\r\n.\r\n"): go-smtp answers what
					// it has buffered before the close. Taken only with its
					// own 250, never as part of the first message.
					want = got
					if strings.Count(replies, "Ok: queued as") != 1 {
						t.Errorf("%s, %s: the second message was taken without its 250: %q", path, c.name, replies)
					}
				}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("%s, %s: intake got %q, want %q", path, c.name, got, want)
				}
			}
		}
	}
}

// On TLS, DATA always takes go-smtp's reader: a bare CR before the dot
// with nothing after it must still get its 550 at once, not wait for the
// idle timeout.
func TestDataBareCRBeforeDotOverTLS(t *testing.T) {
	e := serve(t, Relay, func(cfg *Config) { cfg.IdleTimeout = 30 * time.Second })
	ci := &crIntake{}
	e.srv.intake = ci
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	readReply(t, conn, br)
	fmt.Fprintf(conn, "EHLO client.test\r\n")
	readReply(t, conn, br)
	fmt.Fprintf(conn, "STARTTLS\r\n")
	if n, text := readReply(t, conn, br); n != 220 {
		t.Fatalf("STARTTLS: %q", text)
	}
	tc := tls.Client(conn, e.client)
	io.WriteString(tc, "EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\r\n.\r\n")
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(tc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("no answer within 5s (idle timeout 30s): %q", b)
	}
	if !strings.Contains(string(b), "\r\n550 5.6.0") {
		t.Errorf("replies %q, want 550 5.6.0 and a close", b)
	}
}
