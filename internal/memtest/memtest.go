// Package memtest measures how much a piece of work grows the heap, for
// the tests that prove memory stays bounded whatever the message size.
package memtest

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Peak runs f while sampling the heap in use every 5 ms, and returns the
// heap in use before f (after a GC) and the highest value seen while f
// ran or just after it returned.
func Peak(f func()) (base, peak uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base = ms.HeapInuse
	var top atomic.Uint64
	top.Store(base)
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapInuse > top.Load() {
			top.Store(m.HeapInuse)
		}
	}
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	f()
	close(stop)
	<-sampled
	sample()
	return base, top.Load()
}
