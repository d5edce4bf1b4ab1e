// Package stack grows a goroutine's stack once, early, instead of many
// times, late.
//
// A goroutine starts with a small stack, and the runtime doubles it, by
// copying every frame and adjusting every pointer into it, each time a call
// needs more. relayd's per-message goroutines (an SMTP session, a delivery
// attempt) reach their deepest point (logging, DNS, the TLS and SMTP
// clients) with a dozen frames below it, and grew there two or three times
// per message, a measurable cost under small messages (bench/README.md,
// "Costs behind the code"). Grow, called first thing, makes one copy of a shallow stack to the size
// those paths need.
//
// Invariant: Grow only costs time; the runtime may shrink the stack again at
// a garbage collection (it halves stacks that use a quarter of their size),
// and the goroutine then grows as it would have without Grow.
package stack

// Size is the stack Grow makes room for: the deepest relayd paths measured
// fit in it.
const Size = 16 << 10

// frame is what Grow's frame holds: room for Size less the caller's frames
// and the runtime's guard, so the stack rounds up to Size, not 2*Size.
const frame = Size - 3<<10

// index is a variable (only ever read) so the compiler cannot drop buf.
var index = 0

// Grow makes the calling goroutine's stack at least about Size bytes.
func Grow() { _ = frameOf() }

//go:noinline
func frameOf() byte {
	var buf [frame]byte
	buf[index] = 1
	return buf[index]
}
