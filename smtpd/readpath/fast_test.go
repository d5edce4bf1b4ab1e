package readpath

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// refDecode is the byte-at-a-time reference: step over every byte.
func refDecode(st dotState, src []byte) (out []byte, consumed int, end dotState) {
	for consumed < len(src) && st != stEOF {
		var content bool
		c := src[consumed]
		consumed++
		if st, content = step(st, c); content {
			out = append(out, c)
		}
	}
	return out, consumed, st
}

// refLines is go-smtp's line-limit count, byte by byte.
func refLines(cur, limit int, b []byte) (int, bool) {
	for _, c := range b {
		if c == '\n' {
			cur = 0
		}
		if cur++; cur > limit {
			return cur, false
		}
	}
	return cur, true
}

// FuzzDotDecoder: the run-at-a-time decoder, fed in random pieces into
// random output sizes, yields what step yields byte by byte, stops at the
// same byte, and counts lines as go-smtp does.
func FuzzDotDecoder(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\nQUIT", "..x\r\n.\r\n", "\r\r\n.\r\n.\r\n", ".\rX\r\n.\r\n", "\n.\n.\r\n", "", "."} {
		f.Add([]byte(s), uint8(0), uint16(3), uint16(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, st0 uint8, dstSize, piece uint16) {
		st := dotState(st0 % uint8(stEOF))
		want, wantN, wantSt := refDecode(st, in)
		d := &dotDecoder{st: st}
		var got []byte
		dst := make([]byte, int(dstSize%64)+1)
		pos := 0
		for pos < len(in) && d.st != stEOF {
			end := min(len(in), pos+int(piece%97)+1)
			nw, nr := d.decode(dst, in[pos:end])
			got = append(got, dst[:nw]...)
			pos += nr
			if nw == 0 && nr == 0 {
				t.Fatalf("no progress at %d", pos)
			}
		}
		if !bytes.Equal(got, want) || pos != wantN || d.st != wantSt {
			t.Fatalf("decode(%d, %q) = %q consumed %d state %d; want %q %d %d", st, in, got, pos, d.st, want, wantN, wantSt)
		}
		for _, limit := range []int{1, 5, 40} {
			dl := &dotDecoder{limit: limit, lineLen: min(int(st0)%7, limit)}
			wantLen, wantOK := refLines(dl.lineLen, limit, in)
			if ok := dl.lines(in); ok != wantOK || ok && dl.lineLen != wantLen {
				t.Fatalf("lines(limit %d, %q) = %v len %d; want %v len %d", limit, in, ok, dl.lineLen, wantOK, wantLen)
			}
		}
	})
}

// The tracker's state after any stream equals step's over the whole
// stream, once the stream has an ordinary byte.
func TestTrackerState(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\r\n.a")
	for range 2000 {
		b := make([]byte, 1+rnd.IntN(30))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		tr := tracker{lastOrd: -1}
		st := stData
		for pos := 0; pos < len(b); {
			n := 1 + rnd.IntN(5)
			n = min(n, len(b)-pos)
			tr.note(b[pos : pos+n])
			pos += n
		}
		for _, c := range b {
			if st, _ = step(st, c); st == stEOF {
				break // the DATA reader stops here; the tracker's state after it is moot
			}
		}
		if tr.lastOrd >= 0 && st != stEOF && tr.st != st {
			t.Fatalf("%q: tracker state %d, step %d", b, tr.st, st)
		}
		if want, _ := refLines(0, 1<<30, b); tr.lineLen != want {
			t.Fatalf("%q: tracker line length %d, want %d", b, tr.lineLen, want)
		}
	}
}

// TestHandOverStates checks handOver's claim exhaustively: from the
// tracker's state after the DATA command line's LF (stBOL or stData) and
// the DATA reader's (stBOL), any run of CR, LF and '.' that leaves the
// tracker in stBOL, stDot or stDotCR leaves the DATA reader in the same
// state (unless the DATA reader has ended).
func TestHandOverStates(t *testing.T) {
	specials := []byte("\r\n.")
	var walk func(l []byte)
	checked := 0
	walk = func(l []byte) {
		for _, from := range []dotState{stBOL, stData} {
			tr, dr := from, stBOL
			ended := false
			for _, c := range l {
				tr, _ = step(tr, c)
				if dr, _ = step(dr, c); dr == stEOF {
					ended = true
					break
				}
			}
			if !ended && (tr == stBOL || tr == stDot || tr == stDotCR) {
				checked++
				if tr != dr {
					t.Fatalf("after %q from %d: tracker %d, DATA reader %d", l, from, tr, dr)
				}
			}
		}
		if len(l) < 9 {
			for _, c := range specials {
				walk(append(l[:len(l):len(l)], c))
			}
		}
	}
	walk(nil)
	if checked < 1000 {
		t.Fatalf("only %d cases checked", checked)
	}
}
