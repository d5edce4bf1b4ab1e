package signer

import (
	"io"
	"runtime"
	"testing"
)

// genMessage produces a message of about size bytes on the fly, without
// holding it in memory.
type genMessage struct {
	hdr  []byte
	line []byte
	left int
	memo func() // called about every MiB, to sample the heap
	next int
}

func (g *genMessage) Read(p []byte) (int, error) {
	if len(g.hdr) > 0 {
		n := copy(p, g.hdr)
		g.hdr = g.hdr[n:]
		return n, nil
	}
	if g.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && g.left > 0 {
		c := copy(p[n:], g.line[(g.next)%len(g.line):])
		c = min(c, g.left)
		g.next += c
		n += c
		g.left -= c
	}
	if g.memo != nil && g.next>>20 != (g.next-n)>>20 {
		g.memo()
	}
	return n, nil
}

// Signing a 50 MB message with RSA + Ed25519 keeps heap growth bounded: only
// the header is buffered and the body streams through go-msgauth's signers.
// (Total allocation is only logged: go-msgauth's relaxed body canonicaliser
// allocates two short-lived copies of every chunk per key, about 4x the body
// for dual signing, all of it garbage at once.)
func TestSignStreamsLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB stream")
	}
	s := mustLoad(t, entry{"example.com", "rsa", "rsa2048.pkcs8.pem"}, entry{"example.com", "ed", "ed25519.pem"})
	const size = 50 << 20
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, baseAlloc := ms.HeapInuse, ms.TotalAlloc
	peak := base
	g := &genMessage{
		hdr:  crlf("From: a@example.com\nSubject: big\n\n"),
		line: crlf("The quick brown fox   jumps over the lazy dog.\t \n"),
		left: size,
	}
	g.memo = func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	w, finish, err := s.Sign("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(w, g); err != nil || n < size {
		t.Fatalf("copy: %d, %v", n, err)
	}
	sig, err := finish()
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapInuse)
	growth := int64(peak) - int64(base)
	t.Logf("50 MB message: peak heap growth %d KiB, total allocated %d KiB, %d signature bytes",
		growth>>10, (ms.TotalAlloc-baseAlloc)>>10, len(sig))
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB while signing 50 MB, want <= 16 MiB", growth>>20)
	}
}
