package cleanup

import (
	"bufio"
	"io"
	"sync"
)

// Buffers are reused across messages: allocating 128 KiB per message (the
// reader and copyBody's output) kept the garbage collector busy under small
// messages (bench/README.md, "Costs behind the code"). A pool holds at most
// about one buffer per concurrent submission.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	outPool    = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}
)

const bufSize = 64 << 10

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// putReader returns br to the pool; br must not be used afterwards.
func putReader(br *bufio.Reader) {
	br.Reset(nil) // keep no reference to the submission's reader
	readerPool.Put(br)
}

func getOut() *[]byte { return outPool.Get().(*[]byte) }

// putOut returns b to the pool unless it grew far beyond bufSize.
func putOut(b *[]byte) {
	if cap(*b) > 4*bufSize {
		return
	}
	*b = (*b)[:0]
	outPool.Put(b)
}
