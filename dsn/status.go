package dsn

import (
	"strings"

	"relayd/internal/reply"
)

// rcptReport is everything the notice says about one recipient.
type rcptReport struct {
	addr     string // for the human: one line, may be UTF-8
	final    string // Final-Recipient value
	orig     string // Original-Recipient value, "" when there was no ORCPT
	action   string // RFC 3464 §2.3.3: failed | delayed | relayed
	status   string // RFC 3464 §2.3.4 / RFC 3463
	diag     string // Diagnostic-Code value, "" when there is no reply
	reply    string // the reply for the human: one line, may be UTF-8
	code     int    // the reply code, 0 when the reply had none
	expired  bool   // failed without a permanent reply: the queue gave up on age
	enhanced string // the reply's own enhanced code, "" when absent
}

// report classifies one recipient for a notice of the given kind.
func report(kind Kind, r Recipient) rcptReport {
	rep := rcptReport{
		addr:  reply.OneLine(r.Addr),
		final: typedAddress("rfc822", r.Addr),
	}
	last := r.Reply
	rep.reply = last.String()
	if typ, addr, ok := splitORcpt(r.ORcpt); ok {
		rep.orig = typedAddress(typ, addr)
	}
	// Only a status of the reply code's own class is the peer's (RFC 2034 §4).
	code, enh := last.Code, last.Status()
	rep.code, rep.enhanced = code, enh
	class := code / 100

	switch kind {
	case Relayed:
		rep.action = "relayed"
		rep.status = pick(enh, '2', "2.0.0")
	case Delayed:
		rep.action = "delayed"
		switch class {
		case 5:
			rep.status = pick(enh, '5', "5.0.0")
		default:
			rep.status = pick(enh, '4', "4.0.0")
		}
	default: // Failed; Compose rejects unknown kinds.
		rep.action = "failed"
		switch class {
		case 5:
			rep.status = pick(enh, '5', "5.0.0")
		case 4:
			// Expired after a transient reply: RFC 3463 §3.1 lets a
			// persistent transient status accompany a failed action.
			rep.expired = true
			rep.status = pick(enh, '4', "4.0.0")
		default:
			// No SMTP reply at all (the transport never answered):
			// the only way such a recipient fails is expiry.
			// RFC 3463 §3.5: X.4.7 "Delivery time expired".
			rep.expired = true
			rep.status = "4.4.7"
		}
	}

	switch {
	case code != 0:
		// RFC 3464 §2.3.6: diagnostic-type "smtp" carries the reply.
		rep.diag = "smtp; " + asciiOnly(rep.reply)
	case rep.reply != "":
		// Not an SMTP reply (e.g. a connection error): an
		// extension diagnostic type, RFC 3464 §2.3.6 / §8.
		rep.diag = "X-Relayd; " + asciiOnly(rep.reply)
	}
	return rep
}

// pick returns enh when it is present and of the wanted class, else def.
func pick(enh string, class byte, def string) string {
	if enh != "" && enh[0] == class {
		return enh
	}
	return def
}

// subjectOf returns the subject-detail part of a status ("1.1" of "5.1.1").
func subjectOf(status string) string {
	_, rest, _ := strings.Cut(status, ".")
	return rest
}
