package memtest

import "testing"

var sink []byte

// Peak sees an allocation that f holds while it runs.
func TestPeakSeesAllocation(t *testing.T) {
	base, peak := Peak(func() {
		sink = make([]byte, 16<<20)
		for i := range sink {
			sink[i] = 1
		}
	})
	sink = nil
	if peak < base+16<<20 {
		t.Errorf("base %d, peak %d: a 16 MiB allocation not seen", base, peak)
	}
}
