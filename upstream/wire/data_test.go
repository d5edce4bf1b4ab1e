package wire

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"net/textproto"
	"testing"
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

// encodeEnd runs dataWriter the way the pipelined path does: body written
// in chunks of chunk bytes, then end. It returns the wire bytes.
func encodeEnd(t testing.TB, body []byte, chunk int) []byte {
	t.Helper()
	var raw bytes.Buffer
	dw, _ := newDataWriter(&raw, int64(len(body)))
	defer dw.release()
	for len(body) > 0 {
		n := min(len(body), chunk)
		if k, err := dw.Write(body[:n]); k != n || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		body = body[n:]
	}
	if err := dw.end(); err != nil {
		t.Fatal(err)
	}
	return raw.Bytes()
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
		// DotWriter takes the second CR of a pair as data: a LF after an
		// even run of CRs gets a CR of its own, at the end too.
		"CR CR LF":    {"a\r\r\nb\r\r\r\nc", "a\r\r\r\nb\r\r\r\nc\r\n.\r\n"},
		"final CR CR": {"a\r\r", "a\r\r\r\n.\r\n"},
		"only CR":     {"\r", "\r\n.\r\n"},
		"only LF":     {"\n", "\r\n.\r\n"},
		"CR CR dot":   {"\r\r\n.x", "\r\r\r\n..x\r\n.\r\n"},
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
				if got := encodeEnd(t, []byte(c.in), max(cut, 1)); string(got) != c.want {
					t.Fatalf("end, cut %d: got %q, want %q", cut, got, c.want)
				}
			}
		})
	}
}

// TestDataWriterMatchesDotWriter compares with textproto's DotWriter on
// random CRLF bodies, with and without bare LFs and a missing final CRLF,
// written in random chunk sizes straddling FlushSize.
func TestDataWriterMatchesDotWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"\r\n", "\r\n.", "\r\n..", "\r\n.\r\n", ".", "x", "0123456789abcdef", "\xe9\xff", "\n", "\n.", "\r", "\r\r"}
	for iter := 0; iter < 300; iter++ {
		var b []byte
		size := rng.IntN(3 * FlushSize)
		bare := iter%3 == 0
		for len(b) < size {
			p := pieces[rng.IntN(len(pieces))]
			if !bare && (p == "\n" || p == "\n." || p == "\r" || p == "\r\r") {
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
// at FlushSize, with the CRLF before it split or not.
func TestDataWriterChunkBoundary(t *testing.T) {
	for _, at := range []int{32 << 10, FlushSize} {
		for _, shift := range []int{-2, -1, 0, 1} {
			b := bytes.Repeat([]byte("x"), at+shift)
			b = append(b, "\r\n.dot\r\n..\r\n.\r\nend\r\n"...)
			for _, chunk := range []int{32 << 10, FlushSize, at + shift + 1} {
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
	f.Add([]byte("a\r\r\n\r\r\r\n.\r\r"), 2)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		chunk = 1 + abs(chunk)%(len(b)+1)
		want := reference(b)
		if got := encode(t, b, chunk); !bytes.Equal(got, want) {
			t.Fatalf("got %q want %q", got, want)
		}
		if got := encodeEnd(t, b, chunk); !bytes.Equal(got, want) {
			t.Fatalf("end: got %q want %q", got, want)
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
	big := bytes.Repeat([]byte("y\r\n"), FlushSize)
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
