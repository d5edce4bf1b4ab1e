package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/cleanup"
	"relayd/internal/memtest"
	"relayd/internal/smtptest"
	"relayd/smtpd/readpath"
)

// go-smtp's layout is the one readpath's Gate reaches into: if an upgrade
// changes it, this fails (and long body lines are refused again).
func TestGateInstalled(t *testing.T) {
	if !readpath.GateAvailable {
		t.Fatal("go-smtp's lineLimitReader fields not found: the command line gate cannot be installed")
	}
}

// longBody has the three lines of issue 16: 2,100 characters, a 5,000
// character HTML line and a 100 KB base64 line without breaks.
func longBody() string {
	return "Subject: long\r\n\r\n" + strings.Repeat("x", 2100) + "\r\n" +
		"<html>" + strings.Repeat("<p>.</p>", 624) + "</html>\r\n" +
		strings.Repeat("QUJD", 25600) + "\r\nend\r\n"
}

// Body lines of any length are taken, and handed on unchanged, on
// go-smtp's DATA path, the fast path, with the content pipelined behind
// the commands or after the 354, over STARTTLS and with BDAT (the gate
// keeps only command lines bounded).
func TestLongBodyLinesAccepted(t *testing.T) {
	body := longBody()
	dotted := strings.ReplaceAll(body, "\r\n.", "\r\n..")
	for _, slow := range []bool{true, false} {
		for _, pipelined := range []bool{true, false} {
			e := serve(t, Relay, nil)
			e.srv.slowData = slow
			conn, br, _ := rawEHLO(t, e.addr)
			cmds := "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
			content := dotted + ".\r\nNOOP\r\n"
			go func() {
				conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if pipelined {
					io.WriteString(conn, cmds+content)
					return
				}
				io.WriteString(conn, cmds)
			}()
			for i := range 3 {
				if n, text := readReply(t, conn, br); i == 2 && n != 354 {
					t.Fatalf("slow=%v pipelined=%v: DATA: %q", slow, pipelined, text)
				}
			}
			if !pipelined {
				go func() {
					conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					io.WriteString(conn, content)
				}()
			}
			if n, text := readReply(t, conn, br); n != 250 {
				t.Fatalf("slow=%v pipelined=%v: %q, want 250", slow, pipelined, text)
			}
			if n, text := readReply(t, conn, br); n != 250 || !strings.Contains(text, "nothing") {
				t.Errorf("slow=%v pipelined=%v: NOOP after the message: %q", slow, pipelined, text)
			}
			if e.in.count() != 1 || e.in.data[0] != body {
				t.Errorf("slow=%v pipelined=%v: the intake got other content", slow, pipelined)
			}
		}
	}

	t.Run("starttls", func(t *testing.T) {
		e := serve(t, Relay, nil)
		c := e.startTLS(t)
		if err := c.SendMail("a@example.com", []string{"b@example.org"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if err := c.Noop(); err != nil {
			t.Errorf("NOOP after the message: %v", err)
		}
		if e.in.count() != 1 || e.in.data[0] != body {
			t.Errorf("the intake got other content")
		}
	})

	t.Run("bdat", func(t *testing.T) {
		e := serve(t, Relay, nil)
		conn, br, _ := rawEHLO(t, e.addr)
		half := len(body) / 3
		go func() {
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			// The chunks right behind their commands, in one write, as
			// Exim sends them: go-smtp's own limit counted these bytes.
			fmt.Fprintf(conn, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%sNOOP\r\n",
				half, body[:half], len(body)-half, body[half:])
		}()
		for i := range 5 {
			if n, text := readReply(t, conn, br); n != 250 {
				t.Fatalf("reply %d: %q", i, text)
			}
		}
		if e.in.count() != 1 || e.in.data[0] != body {
			t.Errorf("the intake got other content")
		}
	})
}

// A command line over the limit is refused with 500 5.5.2 and the
// connection closed, in clear and over TLS, however long it is (the gate
// holds at most the limit); one at the limit is a command as any other.
func TestLongCommandLine(t *testing.T) {
	check := func(t *testing.T, conn net.Conn, br *bufio.Reader) {
		t.Helper()
		at := "MAIL FROM:<" + strings.Repeat("a", readpath.CmdLineLimit-len("MAIL FROM:<@example.com>\r\n")) + "@example.com>\r\n"
		if len(at) != readpath.CmdLineLimit {
			t.Fatalf("test line is %d octets", len(at))
		}
		io.WriteString(conn, at)
		if n, text := readReply(t, conn, br); n == 500 {
			t.Errorf("a %d-octet command line: %q", len(at), text)
		}
		io.WriteString(conn, "RSET\r\n")
		readReply(t, conn, br)
		go func() {
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, "MAIL FROM:<"+strings.Repeat("a", 10<<10))
			io.WriteString(conn, strings.Repeat("b", 1<<20)+">\r\nQUIT\r\n")
		}()
		n, text := readReply(t, conn, br)
		if n != 500 || !strings.Contains(text, "5.5.2") || !strings.Contains(text, "4.5.3.1.4") || !strings.Contains(text, fmt.Sprint(readpath.CmdLineLimit)) {
			t.Errorf("a 1 MB command line: %q, want 500 5.5.2 naming the limit", text)
		}
		if n, text := readReply(t, conn, br); n != 0 {
			t.Errorf("after the refusal: %q, want the connection closed", text)
		}
	}
	e := serve(t, Relay, nil)
	t.Run("clear", func(t *testing.T) {
		conn, br, _ := rawEHLO(t, e.addr)
		check(t, conn, br)
	})
	t.Run("starttls", func(t *testing.T) {
		conn, br, _ := rawEHLO(t, e.addr)
		io.WriteString(conn, "STARTTLS\r\n")
		if n, text := readReply(t, conn, br); n != 220 {
			t.Fatalf("STARTTLS: %q", text)
		}
		tc := tls.Client(conn, e.client)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		tbr := bufio.NewReader(tc)
		io.WriteString(tc, "EHLO client.test\r\n")
		readReply(t, tc, tbr)
		check(t, tc, tbr)
	})
	if e.in.count() != 0 {
		t.Errorf("%d messages accepted", e.in.count())
	}
}

// A message of one endless line over max_message_bytes gets the size
// refusal on both DATA paths, not a line limit.
func TestEndlessLineTooBig(t *testing.T) {
	for _, slow := range []bool{true, false} {
		e := serve(t, Relay, func(c *Config) { c.Settings.MaxMessageBytes = 1 << 20 })
		e.srv.slowData = slow
		conn, br, _ := rawEHLO(t, e.addr)
		io.WriteString(conn, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		for range 3 {
			readReply(t, conn, br)
		}
		go func() {
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "Subject: x\r\n\r\n"+strings.Repeat("y", 3<<20)+"\r\n.\r\nNOOP\r\n")
		}()
		if n, text := readReply(t, conn, br); n != 552 || !strings.Contains(text, "5.3.4") {
			t.Errorf("slow=%v: %q, want 552 5.3.4", slow, text)
		}
		if n, text := readReply(t, conn, br); n != 250 {
			t.Errorf("slow=%v: NOOP after the refusal: %q", slow, text)
		}
		if e.in.count() != 0 {
			t.Errorf("slow=%v: accepted", slow)
		}
	}
}

// sinkIntake reads the content a buffer at a time, as cleanup does, and
// keeps only its size and checksum.
type sinkIntake struct {
	n   atomic.Int64
	crc atomic.Uint32
}

func (s *sinkIntake) Submit(_ context.Context, _ *cleanup.Submission, r io.Reader) (string, error) {
	h := crc32.NewIEEE()
	n, err := io.CopyBuffer(h, r, make([]byte, 32<<10))
	if err != nil {
		return "", err
	}
	s.n.Store(n)
	s.crc.Store(h.Sum32())
	return "ID1", nil
}

func (s *sinkIntake) Sender(a string) (string, *smtp.SMTPError)    { return cleanup.ParseAddress(a) }
func (s *sinkIntake) Recipient(a string) (string, *smtp.SMTPError) { return cleanup.ParseAddress(a) }

// A 30 MB single line (max_message_bytes 40 MB) is taken, and the
// server's heap does not grow with it: no line is ever held whole, on
// either DATA path or over TLS. The heap in use is sampled while the line
// streams (client and server share the process: the client writes from
// one small buffer).
func TestHugeLineMemoryBounded(t *testing.T) {
	const lineLen = 30 << 20
	for _, mode := range []string{"fast", "slow", "tls"} {
		t.Run(mode, func(t *testing.T) {
			in := &sinkIntake{}
			ca := smtptest.NewCA(t)
			cert := ca.Leaf(t, "localhost", "127.0.0.1")
			tlsClient := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
			s := New(Config{Hostname: "relay.test", Mode: Relay, IdleTimeout: 10 * time.Second,
				TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
				Settings: Settings{RelayNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
					MaxMessageBytes: 40 << 20, MaxRecipients: 5}}, in)
			s.slowData = mode == "slow"
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { s.Serve(l); close(done) }()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s.Shutdown(ctx)
				<-done
			}()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var c *smtp.Client
			if mode == "tls" {
				c, err = smtp.NewClientStartTLS(conn, tlsClient)
			} else {
				c = smtp.NewClient(conn)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Mail("a@example.com", nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("b@example.org", nil); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			chunk := []byte(strings.Repeat("0123456789abcdef", 4096)) // 64 KB
			var werr error
			base, peak := memtest.Peak(func() {
				io.WriteString(w, "Subject: one line\r\n\r\n")
				for sent := 0; sent < lineLen && werr == nil; sent += len(chunk) {
					_, werr = w.Write(chunk)
				}
				io.WriteString(w, "\r\n")
				err = w.Close()
			})
			if werr != nil {
				t.Fatal(werr)
			}
			if err != nil {
				t.Fatalf("a %d MB line: %v", lineLen>>20, err)
			}
			if want := int64(len("Subject: one line\r\n\r\n") + lineLen + 2); in.n.Load() != want {
				t.Errorf("the intake got %d bytes, want %d", in.n.Load(), want)
			}
			grew := int64(peak) - int64(base)
			t.Logf("%s: heap in use %d KB before, peak %d KB while a %d MB line streamed (+%d KB)",
				mode, base>>10, peak>>10, lineLen>>20, grew>>10)
			if grew > 8<<20 {
				t.Errorf("the heap grew by %d MB while a %d MB line streamed", grew>>20, lineLen>>20)
			}
			c.Quit()
		})
	}
}
