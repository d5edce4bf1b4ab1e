package envelope

import (
	"testing"

	"relayd/internal/reply"
)

// Last gives the stored fields, and for an entry written before them the
// one-line reply parsed: the same reply either way.
func TestRecipientLast(t *testing.T) {
	for _, line := range []string{"550 5.1.1 no such user", "451 4.3.0 try later", "250 Ok", "i/o timeout", ""} {
		old := Recipient{Addr: "b@example.org", LastReply: line}
		var cur Recipient
		cur.SetReply(reply.Parse(line))
		if old.Last() != cur.Last() {
			t.Errorf("%q: from the string %+v, from fields %+v", line, old.Last(), cur.Last())
		}
	}
	// Fields win over the string: nobody parses what the queue formatted.
	r := Recipient{LastReply: "451 4.3.0 stale", Reply: reply.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}}
	if got := r.Last(); got.Code != 550 || got.Enhanced != "5.1.1" {
		t.Errorf("fields ignored: %+v", got)
	}
}
