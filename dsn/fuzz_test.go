package dsn

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzCompose feeds arbitrary replies, addresses, ENVIDs and originals to
// Compose and checks the invariants: CRLF lines of at most 998 octets, the
// fixed top-level header set, and exactly one recipient block.
func FuzzCompose(f *testing.F) {
	f.Add("550 5.1.1 no\r\nBcc: x@y", "b@example.org", "env", "Subject: s\r\n\r\nbody\r\n", "FULL")
	f.Add(strings.Repeat("a", 2000), "jörg@bücher.example", "", "\n\n\r\r", "")
	f.Add("451 4.4.1 \x00\x7f\u2028", "", "e\r\n", "--b-1\r\n", "HDRS")
	f.Fuzz(func(t *testing.T, reply, addr, envid, orig, ret string) {
		n, p := baseNotice(reply)
		n.Rcpts[0].Addr = addr
		n.EnvID = envid
		n.Ret = ret
		n.Size = int64(len(orig))
		n.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(orig)), nil }
		var b bytes.Buffer
		if err := Compose(n, p, &b); err != nil {
			t.Fatal(err)
		}
		msg := b.Bytes()
		// The included original is copied as is, so only the composed
		// part (everything before part 3) must keep the line limit.
		composed := msg
		if i := bytes.Index(msg, []byte("Content-Description: Undelivered Message")); i >= 0 {
			composed = msg[:i]
		}
		for _, line := range bytes.Split(composed, []byte("\r\n")) {
			if len(line) > 998 || bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("bad line %q", line)
			}
		}
		want := "From,To,Subject,Date,Message-ID,Auto-Submitted,MIME-Version,Content-Type,Content-Transfer-Encoding"
		if got := strings.Join(topHeaders(msg), ","); got != want {
			t.Fatalf("top-level headers %s", got)
		}
		_, ds, _ := bytes.Cut(composed, []byte("Content-Type: message/delivery-status\r\n\r\n"))
		if got := bytes.Count(ds, []byte("\r\nFinal-Recipient:")); got != 1 {
			t.Fatalf("%d Final-Recipient fields", got)
		}
	})
}
