package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/cleanup"
)

// benchIntake reads the content a buffer at a time, as cleanup does, and
// drops it.
type benchIntake struct{}

func (benchIntake) Submit(_ context.Context, _ *cleanup.Submission, r io.Reader) (string, error) {
	_, err := io.CopyBuffer(io.Discard, r, make([]byte, 32<<10))
	return "ID1", err
}
func (benchIntake) Sender(a string) (string, *smtp.SMTPError)    { return cleanup.ParseAddress(a) }
func (benchIntake) Recipient(a string) (string, *smtp.SMTPError) { return cleanup.ParseAddress(a) }

// BenchmarkData1MB: 1 MB messages (76-character lines, some dot-stuffed)
// over one cleartext connection, as smtpd serves them (the fast path).
func BenchmarkData1MB(b *testing.B) {
	s := New(Config{Hostname: "relay.test", Mode: Relay, IdleTimeout: 10 * time.Second,
		Settings: Settings{RelayNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			MaxMessageBytes: 2 << 20, MaxRecipients: 5}}, benchIntake{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	}()
	var body strings.Builder
	body.WriteString("Subject: bench\r\n\r\n")
	for i := 0; body.Len() < 1<<20; i++ {
		if i%50 == 0 {
			body.WriteString("..a dot-stuffed line\r\n")
		}
		body.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	msg := "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" + body.String() + ".\r\n"
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	br := bufio.NewReader(c)
	reply := func() string {
		var last string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if last = line; len(line) < 4 || line[3] != '-' {
				return last
			}
		}
	}
	reply()
	fmt.Fprintf(c, "EHLO bench\r\n")
	reply()
	b.SetBytes(int64(len(body.String())))
	b.ResetTimer()
	for range b.N {
		io.WriteString(c, msg)
		for range 4 {
			if r := reply(); r[0] != '2' && r[0] != '3' {
				b.Fatalf("reply %q", r)
			}
		}
	}
}
