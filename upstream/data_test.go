package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// reference encodes body with textproto's DotWriter, the encoder go-smtp
// uses and dataWriter replaces: the exact bytes from DATA's 354 through the
// terminating ".\r\n".
func reference(body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	dw.Write(body)
	dw.Close()
	return out.Bytes()
}

// encode runs dataWriter the way transact does: body written in the given
// chunk sizes, the held-back tail through a DotWriter, whose Close adds the
// terminator. It returns the wire bytes.
func encode(t testing.TB, body []byte, chunks ...int) []byte {
	t.Helper()
	var raw, dot bytes.Buffer
	dw, _ := newDataWriter(&raw, int64(len(body)))
	// Released at the end, as transact does: later calls reuse the
	// buffers, stale bytes and all.
	defer dw.release()
	for i := 0; len(body) > 0; i++ {
		n := len(body)
		if len(chunks) > 0 {
			n = min(n, chunks[i%len(chunks)])
		}
		if k, err := dw.Write(body[:n]); k != n || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		body = body[n:]
	}
	tail, err := dw.finish()
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(&dot)
	w := textproto.NewWriter(bw).DotWriter()
	w.Write(tail)
	w.Close()
	if raw.Len() > 0 && bytes.HasSuffix(raw.Bytes(), []byte("\r\n")) && len(tail) == 0 {
		t.Fatalf("nothing held back although the raw part ends in CRLF")
	}
	return append(raw.Bytes(), dot.Bytes()...)
}

func TestDataWriterCases(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"empty":            {"", "\r\n.\r\n"},
		"plain":            {"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		"no final CRLF":    {"a\r\nb", "a\r\nb\r\n.\r\n"},
		"final bare CR":    {"a\r\nb\r", "a\r\nb\r\n.\r\n"},
		"leading dot":      {".a\r\n", "..a\r\n.\r\n"},
		"dot line":         {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		"two dots":         {"a\r\n..\r\n", "a\r\n...\r\n.\r\n"},
		"lone dot":         {".", "..\r\n.\r\n"},
		"dot not at start": {"a.\r\nb.c\r\n", "a.\r\nb.c\r\n.\r\n"},
		"bare LF":          {"a\nb\n.c\n", "a\r\nb\r\n..c\r\n.\r\n"},
		"CR dot":           {"a\r.b\r\n", "a\r.b\r\n.\r\n"},
		"8-bit":            {"\xc3\xa9\xff\x00.\r\n.\xff\r\n", "\xc3\xa9\xff\x00.\r\n..\xff\r\n.\r\n"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			// Every single split point, so state carried across writes is
			// exercised at each byte.
			for cut := 0; cut <= len(c.in); cut++ {
				var raw, dot bytes.Buffer
				dw, _ := newDataWriter(&raw, 0)
				dw.Write([]byte(c.in[:cut]))
				dw.Write([]byte(c.in[cut:]))
				tail, err := dw.finish()
				if err != nil {
					t.Fatal(err)
				}
				w := textproto.NewWriter(bufio.NewWriter(&dot)).DotWriter()
				w.Write(tail)
				w.Close()
				if got := raw.String() + dot.String(); got != c.want {
					t.Fatalf("cut %d: got %q, want %q", cut, got, c.want)
				}
			}
		})
	}
}

// TestDataWriterMatchesDotWriter compares with textproto's DotWriter on
// random CRLF bodies, with and without bare LFs and a missing final CRLF,
// written in random chunk sizes straddling dataFlushAt.
func TestDataWriterMatchesDotWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"\r\n", "\r\n.", "\r\n..", "\r\n.\r\n", ".", "x", "0123456789abcdef", "\xe9\xff", "\n", "\n."}
	for iter := 0; iter < 300; iter++ {
		var b []byte
		size := rng.IntN(3 * dataFlushAt)
		bare := iter%3 == 0
		for len(b) < size {
			p := pieces[rng.IntN(len(pieces))]
			if !bare && p[0] == '\n' {
				continue
			}
			b = append(b, p...)
		}
		if iter%2 == 0 {
			b = append(b, "\r\n"...)
		}
		chunks := []int{1 + rng.IntN(100), 1 + rng.IntN(70000), 1 + rng.IntN(5)}
		if got, want := encode(t, b, chunks...), reference(b); !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("iteration %d (chunks %v): differs at byte %d of %d/%d: got %q want %q",
				iter, chunks, i, len(got), len(want), got[i:min(i+20, len(got))], want[i:min(i+20, len(want))])
		}
	}
}

// TestDataWriterChunkBoundary puts a dot-leading line exactly at the 32 KiB
// boundary of the reads that feed the writer (io.Copy's buffer size) and
// at dataFlushAt, with the CRLF before it split or not.
func TestDataWriterChunkBoundary(t *testing.T) {
	for _, at := range []int{32 << 10, dataFlushAt} {
		for _, shift := range []int{-2, -1, 0, 1} {
			b := bytes.Repeat([]byte("x"), at+shift)
			b = append(b, "\r\n.dot\r\n..\r\n.\r\nend\r\n"...)
			for _, chunk := range []int{32 << 10, dataFlushAt, at + shift + 1} {
				if got, want := encode(t, b, chunk), reference(b); !bytes.Equal(got, want) {
					t.Fatalf("at %d%+d, chunk %d: encodings differ", at, shift, chunk)
				}
			}
		}
	}
}

func FuzzDataWriter(f *testing.F) {
	f.Add([]byte("a\r\n.\r\nb"), 3)
	f.Add([]byte(".\n..\r\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		if bytes.Contains(b, []byte("\r\r")) {
			// DotWriter turns "\r\r\n" into "\r\r\r\n"; dataWriter does
			// not add a CR before a LF that has one.
			t.Skip()
		}
		chunk = 1 + abs(chunk)%(len(b)+1)
		if got, want := encode(t, b, chunk), reference(b); !bytes.Equal(got, want) {
			t.Fatalf("got %q want %q", got, want)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errors.New("wire broke")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestDataWriterStickyError(t *testing.T) {
	dw, _ := newDataWriter(&failWriter{n: 10}, 0)
	big := bytes.Repeat([]byte("y\r\n"), dataFlushAt)
	if _, err := dw.Write(big); err == nil {
		t.Fatal("Write succeeded on a broken wire")
	}
	if _, err := dw.Write([]byte("z")); err == nil {
		t.Fatal("second Write succeeded")
	}
	if _, err := dw.finish(); err == nil {
		t.Fatal("finish succeeded")
	}
}

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
		{"dot at flush", lines(dataFlushAt) + ".\r\n" + lines(dataFlushAt-3) + ".\r\n", ""},
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
