package readpath

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// pieces reads src in pieces of the sizes in sizes (cycled).
type pieces struct {
	src   []byte
	sizes []byte
	i     int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.src) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(p.sizes) > 0 {
		n = int(p.sizes[p.i%len(p.sizes)]) + 1
		p.i++
	}
	n = min(n, len(b), len(p.src))
	copy(b, p.src[:n])
	p.src = p.src[n:]
	return n, nil
}

// FuzzCmdGate: whatever the stream and however it is split, the gate
// hands on exactly the bytes it read, in order, each command line whole
// (never a piece of one), and stops only at a command line over its
// limit, after the reply. BDAT chunks (and what follows a DATA line that
// no Data took) pass as go-smtp reads them.
func FuzzCmdGate(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n",
		"BDAT 5 LAST\r\n" + strings.Repeat("z", 5) + "NOOP\r\n",
		"BDAT 40\r\n" + strings.Repeat("y", 40) + "BDAT 0 LAST\r\nQUIT\r\n",
		"DATA\r\nNOOP\r\n" + strings.Repeat("L", 100) + "\r\n",
		"bdat 3 last\r\nabcNOOP\r\nBDAT x\r\n" + strings.Repeat("Q", 30),
	} {
		f.Add([]byte(s), []byte{3, 200, 0, 17}, uint8(9))
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte, psize uint8) {
		const limit = 24
		var reply bytes.Buffer
		zero := 0
		g := &Gate{r: &pieces{src: in, sizes: sizes}, w: &reply, goLimit: &zero, limit: limit}
		var out []byte
		p := make([]byte, int(psize%40)+1)
		for range len(in) + 10 {
			n, err := g.Read(p)
			out = append(out, p[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("handed %q, not a prefix of %q", out, in)
		}
		if g.dead {
			if !strings.HasPrefix(reply.String(), "500 5.5.2 ") {
				t.Fatalf("refused with %q", reply.String())
			}
			rest := in[len(out):]
			if i := bytes.IndexByte(rest, '\n'); i >= 0 && i+1 <= limit || i < 0 && len(rest) < limit {
				t.Fatalf("refused %q, a command line within the limit, after %q", rest, out)
			}
			return
		}
		if reply.Len() > 0 {
			t.Fatalf("a reply %q without a refusal", reply.String())
		}
		if !bytes.Equal(out, in) {
			// Only an unterminated command line at the end stays held.
			rest := in[len(out):]
			if g.mode != gateCommand || bytes.IndexByte(rest, '\n') >= 0 || len(rest) >= limit {
				t.Fatalf("held %q (mode %d) after handing %q", rest, g.mode, out)
			}
		}
	})
}

// A piece of a command line is never handed on: a client that stops
// mid-line leaves go-smtp with nothing to execute.
func TestCmdGateWholeLines(t *testing.T) {
	zero := 0
	g := &Gate{r: iotest.OneByteReader(strings.NewReader("NOOP\r\nRCPT TO:<a@b.example>")), w: io.Discard, goLimit: &zero, limit: CmdLineLimit}
	var got []byte
	p := make([]byte, 64)
	for {
		n, err := g.Read(p)
		got = append(got, p[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != "NOOP\r\n" {
		t.Errorf("handed %q, want only the complete line", got)
	}
}
