package upstream

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"relayd/internal/smtptest"
	"relayd/upstream/wire"
)

// TestBodiesOverTheWire delivers awkward bodies through STARTTLS on one
// reused connection and checks the server received each byte for byte (a
// missing CRLF at the end is added), and that the connection stays usable
// after each bulk-written body (RSET, next MAIL).
func TestBodiesOverTheWire(t *testing.T) {
	bodies := []struct{ name, in, want string }{
		{"dot line", "Subject: a\r\n\r\nbefore\r\n.\r\nafter\r\n", ""},
		{"double dot", "Subject: b\r\n\r\n..\r\n...x\r\n", ""},
		{"no final CRLF", "Subject: c\r\n\r\nlast line", "Subject: c\r\n\r\nlast line\r\n"},
		{"dot at 32 KiB", lines(32<<10) + ".at boundary\r\n" + lines(32<<10) + "..\r\n", ""},
		{"dot at flush", lines(wire.FlushSize) + ".\r\n" + lines(wire.FlushSize-3) + ".\r\n", ""},
		{"ends with dot line", "Subject: f\r\n\r\nx\r\n.", "Subject: f\r\n\r\nx\r\n.\r\n"},
		{"test body", testBody, ""},
	}
	s := strictServer(t, smtptest.Faults{})
	c, _ := newClient(t, s, func(cfg *Config) { cfg.MaxConns = 1 })
	for i, b := range bodies {
		d := delivery(b.name, "b@example.net")
		d.Size = int64(len(b.in))
		in := b.in
		d.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(in)), nil }
		out, err := c.Deliver(context.Background(), d)
		if err != nil || out.Rcpts[0] != nil {
			t.Fatalf("%s: %v %v", b.name, out.Rcpts, err)
		}
		want := b.want
		if want == "" {
			want = b.in
		}
		m := s.WaitMessages(t, i+1, 5*time.Second)[i]
		if string(m.Data) != want {
			t.Errorf("%s: received %d bytes, want %d (%q...)", b.name, len(m.Data), len(want), firstDiff(string(m.Data), want))
		}
	}
	if n := s.Conns(); n != 1 {
		t.Errorf("connections = %d, want 1 (reused for every message)", n)
	}
}

func firstDiff(a, b string) string {
	i := 0
	for i < min(len(a), len(b)) && a[i] == b[i] {
		i++
	}
	return a[i:min(i+30, len(a))]
}

// lines returns n bytes of short CRLF lines (n >= 16), starting with a
// header and a blank line.
func lines(n int) string {
	const head = "Subject: l\r\n\r\n"
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < n {
		k := min(78, n-b.Len()-2)
		b.WriteString(strings.Repeat("x", max(k, 0)) + "\r\n")
	}
	return b.String()
}
