// Package dsn composes RFC 3464 delivery status notifications: bounces
// ("failed"), delay warnings ("delayed") and relay reports ("relayed").
//
// Compose is a pure function of its inputs. It reads no clock, draws no
// random numbers and does no I/O except reading the original message through
// Notice.Open; the caller chooses the date, Message-ID and MIME
// boundary, so the same inputs always yield the same bytes. Deciding when a
// notice is due, and submitting it with the null sender, is the queue's and
// the wiring's job, not this package's.
//
// Invariants of the output:
//   - It is a complete RFC 5322 message with CRLF line endings and a
//     multipart/report; report-type=delivery-status body (RFC 6522) with the
//     parts RFC 3464 §2 asks for: a human-readable text, a
//     message/delivery-status, and (when the original can be read) the
//     original's header block (text/rfc822-headers, RFC 6522 §4) or, for
//     RET=FULL originals no larger than Params.MaxFull, the whole original
//     (message/rfc822).
//   - Text that comes from outside (peer replies, addresses, ENVID) never
//     carries CR, LF or other control characters into a header or a
//     delivery-status field: it cannot add header lines.
//   - Every line composed here is at most 998 octets (RFC 5322 §2.1.1);
//     long fields are folded at white space, and a run longer than a line is
//     split. The included original is copied as it is (with bare LF/CR
//     normalised to CRLF); its lines are whatever the intake accepted.
//   - The human-readable part is UTF-8, sent as 7bit when it is pure ASCII
//     and quoted-printable otherwise; the message/delivery-status part is
//     pure US-ASCII (RFC 3464 §2.1, RFC 6533 utf-8-addr-xtext for non-ASCII
//     addresses). Only an 8-bit original makes the message 8bit.
//   - The MIME boundary never occurs in the content: if the caller's
//     boundary collides, a deterministic variant of it is used.
package dsn
