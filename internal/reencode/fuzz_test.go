package reencode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// genTree builds a random MIME message from r: nested multiparts, leaves of
// random types and encodings, lines of random length (some far over 998).
func genTree(r *rand.Rand, depth int, top bool) string {
	var b strings.Builder
	if top {
		b.WriteString("From: a@x.example\r\nSubject: fuzz\r\n")
		if r.IntN(2) == 0 {
			b.WriteString("MIME-Version: 1.0\r\n")
		}
	}
	if depth < 3 && r.IntN(3) == 0 {
		bd := fmt.Sprintf("bd%d_%d", depth, r.IntN(1000))
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", bd)
		if r.IntN(2) == 0 {
			b.WriteString("preamble\r\n")
		}
		for range 1 + r.IntN(3) {
			fmt.Fprintf(&b, "--%s\r\n%s\r\n", bd, genTree(r, depth+1, false))
		}
		fmt.Fprintf(&b, "--%s--\r\n", bd)
		if r.IntN(2) == 0 {
			b.WriteString("epilogue\r\n")
		}
		return b.String()
	}
	types := []string{"text/plain; charset=utf-8", "text/html", "application/json", "application/pdf", ""}
	ctes := []string{"", "7bit", "8bit", "base64", "quoted-printable", "binary"}
	if ct := types[r.IntN(len(types))]; ct != "" {
		b.WriteString("Content-Type: " + ct + "\r\n")
	}
	cte := ctes[r.IntN(len(ctes))]
	if cte != "" {
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
	b.WriteString("\r\n")
	for range r.IntN(4) {
		n := r.IntN(40)
		if r.IntN(3) == 0 {
			n = 900 + r.IntN(3000)
		}
		if cte == "base64" {
			b.WriteString(randBase64(n/4*4) + "\r\n")
			continue
		}
		line := make([]byte, n)
		for i := range line {
			line[i] = " abc=\t\xc3\xa9-"[r.IntN(9)]
		}
		b.Write(bytes.TrimLeft(line, "-")) // never a delimiter
		b.WriteString("\r\n")
	}
	return b.String()
}

// FuzzFix: a random MIME tree either fails with ErrUnfixable or comes out
// with no line over 998 octets, and fixing that again changes nothing.
func FuzzFix(f *testing.F) {
	for i := range 8 {
		f.Add(uint64(i), uint64(i*7+1))
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		msg := genTree(rand.New(rand.NewPCG(a, b)), 0, true)
		got, n, err := fix(t, msg)
		if errors.Is(err, ErrUnfixable) {
			return
		}
		if err != nil {
			t.Fatalf("Fix: %v\n%q", err, msg)
		}
		if l := longestLine(got); l > 998 {
			t.Fatalf("a %d-octet line is left (%d parts fixed):\n%q", l, n, got)
		}
		if n == 0 && got != msg {
			t.Fatalf("nothing to fix, yet the message changed")
		}
		again, n2, err := fix(t, got)
		if err != nil || n2 != 0 || again != got {
			t.Fatalf("fixing twice: %d %v", n2, err)
		}
	})
}

// A 32 MB line is re-encoded with memory that does not grow with it.
func TestMemoryBoundedByLine(t *testing.T) {
	const size = 32 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	msg := append([]byte("Subject: big\r\n\r\n"), body...)
	msg = append(msg, "\r\n"...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := Fix(io.Discard, bytes.NewReader(msg), int64(len(msg)))
	runtime.ReadMemStats(&after)
	if err != nil || n != 1 {
		t.Fatalf("Fix: %d %v", n, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("allocated %d bytes for a %d-byte line", grew, size)
	}
}

// Random trees decode to the same content after fixing (Python's email).
func TestRandomTreesSameContent(t *testing.T) {
	checked := 0
	for seed := uint64(0); seed < 200 && checked < 15; seed++ {
		msg := genTree(rand.New(rand.NewPCG(seed, 99)), 0, true)
		got, n, err := fix(t, msg)
		if err != nil || n == 0 {
			continue
		}
		checked++
		sameContent(t, msg, got)
	}
	if checked < 5 {
		t.Errorf("only %d random trees needed fixing", checked)
	}
}
