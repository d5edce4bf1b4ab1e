package cleanup

import (
	"mime"
	"strconv"
	"strings"

	"relayd/envelope"
)

// Identity: a smarthost account that may send only as one address
// ([[smarthost]] from) refuses mail whose header From is another one
// ("SendAsDenied", "553 sender not owned by user"). For a message routed
// to such a smarthost, intake rewrites it the way DMARC-safe forwarders
// (mailing lists) do, before DKIM signing, so the signature covers the new
// From and its domain:
//
//   - From: "Original Name via relayd" <from>  (the display name is the
//     original one, or the original address when it had none; the other
//     From addresses of a list are dropped: the account sends as one);
//   - Reply-To: the original From field's value, added only when the
//     message has no Reply-To (replies still reach the author);
//   - the envelope sender becomes from (the null sender of a notice stays
//     <>; the smarthost's null_sender applies to it).
//
// A message whose header From already is from is not changed. The rewrite
// is per queue entry: a message whose recipients take several smarthosts
// is split into one entry per smarthost (Config.split), each rewritten for
// its own smarthost's from, or not at all. The original envelope sender
// and header From domain are kept in the queue entry (Envelope.RouteSender,
// FromDomain) so that routes still match on them at every attempt. The
// rewrite is fixed at intake: a reload that re-routes queued mail does not
// rewrite it again, nor undo it (an entry that a reload spreads over
// several smarthosts keeps its one From).

// applyIdentity rewrites h and env for the identity from, returning
// whether anything changed. fromDomain is the original header From's.
func applyIdentity(h *header, env *envelope.Envelope, from string) bool {
	changed := false
	orig := ""
	display, addr := "", ""
	if f := h.get("from"); f != nil {
		orig = f.value()
		display, addr = addressOf(orig)
	} else {
		addr = env.From
		orig = "<" + addr + ">"
	}
	if addr != "" && !strings.EqualFold(addr, from) {
		name := display
		if name == "" {
			name = addr
		}
		v := "From: " + displayName(oneLine(name)+" via relayd") + " <" + from + ">\r\n"
		h.remove("from")
		h.fields = append([]field{{name: "from", raw: []byte(v)}}, h.fields...)
		if h.get("reply-to") == nil {
			h.fields = append(h.fields, field{name: "reply-to", raw: []byte("Reply-To: " + oneLine(orig) + "\r\n")})
		}
		changed = true
	}
	if env.From != "" && !strings.EqualFold(env.From, from) {
		if env.RouteSender == "" {
			env.RouteSender = env.From
		}
		env.From = from
		changed = true
	}
	return changed
}

// displayName is name as an RFC 5322 quoted string, or an RFC 2047
// encoded word when it is not ASCII (a decoded encoded word of the
// original, which may not go back raw into a header).
func displayName(name string) string {
	for _, r := range name {
		if r >= 0x80 || r < ' ' {
			return mime.QEncoding.Encode("utf-8", name)
		}
	}
	return strconv.Quote(name)
}

// remove drops every field called name (lower case).
func (h *header) remove(name string) {
	out := h.fields[:0]
	for _, f := range h.fields {
		if f.name != name {
			out = append(out, f)
		}
	}
	h.fields = out
}

// oneLine keeps a header value on one line and free of characters that
// would end a quoted string early.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\x00", "")), " ")
}
