package stack

import (
	"testing"
	"unsafe"
)

// A call chain of about 10 KiB copies a fresh goroutine's stack (a local
// variable moves), and does not after Grow: a Grow the compiler dropped, or
// one too small, fails here.
func TestGrowGrowsTheStack(t *testing.T) {
	moved := func(grow bool) bool {
		done := make(chan bool)
		go func() {
			if grow {
				Grow()
			}
			var x int
			before := uintptr(unsafe.Pointer(&x))
			deep(30)
			done <- uintptr(unsafe.Pointer(&x)) != before
		}()
		return <-done
	}
	for range 20 {
		if !moved(false) {
			t.Fatal("a plain goroutine's stack did not move: the test proves nothing")
		}
		if moved(true) {
			t.Fatal("the stack moved after Grow")
		}
	}
}

func BenchmarkDeepCall(b *testing.B) {
	for _, grow := range []bool{false, true} {
		name := "plain"
		if grow {
			name = "grow"
		}
		b.Run(name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					if grow {
						Grow()
					}
					deep(40)
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}

//go:noinline
func deep(n int) byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[n%256]
}
