package upstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"relayd/envelope"
	"relayd/internal/smtptest"
	"relayd/internal/tlsmode"
)

// BenchmarkDeliver delivers one message per iteration to a local go-smtp
// server over one reused plain-text connection (loopback, tls = "none"),
// pipelined (the server offers PIPELINING) or command by command (DSN
// parameters keep go-smtp's path): the client's cost per message, the
// body encoding included.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10} {
		for _, path := range []string{"pipelined", "go-smtp"} {
			b.Run(fmt.Sprintf("%s/%dKiB", path, size>>10), func(b *testing.B) {
				s := smtptest.New(b, smtptest.Options{RequireTLS: false, NoSTARTTLS: true, DSN: path == "go-smtp"})
				c, err := New(Config{Address: s.Addr(), TLS: tlsmode.None, Hostname: testHost, Timeout: 10 * time.Second, MaxConns: 1,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				line := strings.Repeat("0123456789abcdef", 4)[:62] + "\r\n"
				body := "Subject: bench\r\n\r\n.dot\r\n" + strings.Repeat(line, size/len(line))
				d := &envelope.Delivery{ID: "bench", From: "a@example.com", Size: int64(len(body)),
					Rcpts: []envelope.Recipient{{Addr: "b@example.net", State: envelope.Pending}}}
				if path == "go-smtp" {
					d.Rcpts[0].Notify = []string{"FAILURE"}
				}
				d.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
				b.SetBytes(int64(len(body)))
				b.ResetTimer()
				for range b.N {
					out, err := c.Deliver(context.Background(), d)
					if err != nil || out.Rcpts[0] != nil {
						b.Fatalf("%v %v", out.Rcpts, err)
					}
				}
			})
		}
	}
}
