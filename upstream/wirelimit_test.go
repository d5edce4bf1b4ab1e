package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relayd/upstream/wire"
)

// TestReplyLineLimitBothPaths: go-smtp's Client refuses a reply line of
// wire.GoSMTPLineLimit octets or more before its LF; the pipelined path
// reads replies through the seam, which refuses the same lines, so the two
// paths agree on a RCPT reply at the limit (before the seam the pipelined
// path took lines up to maxReplyLine).
func TestReplyLineLimitBothPaths(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		for _, n := range []int{wire.GoSMTPLineLimit - 1, wire.GoSMTPLineLimit} {
			t.Run(fmt.Sprintf("pipelining=%v/%d", pipelining, n), func(t *testing.T) {
				// n octets before the LF: "250 ", text, CR.
				reply := "250 " + strings.Repeat("r", n-5)
				f := newFakeMTA(t, fakeOpts{pipelining: pipelining, rcpt: func(int, string) string { return reply }})
				c, _ := f.client(t, nil)
				out, err := c.Deliver(context.Background(), delivery("m1", "b@example.net"))
				if n < wire.GoSMTPLineLimit {
					if err != nil || out.Rcpts[0] != nil {
						t.Fatalf("%v %v", out.Rcpts, err)
					}
					return
				}
				wantErr(t, err, StageRcpt)
				if !errors.Is(err, smtp.ErrTooLongLine) {
					t.Fatalf("err = %v, want smtp.ErrTooLongLine", err)
				}
			})
		}
	}
}
