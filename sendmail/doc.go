// Package sendmail is the client side of relayd's sendmail-compatible
// command: it parses sendmail's command line, reads the message from
// standard input, and submits it to the daemon over the Unix socket
// STATE_DIR/public/submit.sock, or, when the daemon does not take it (not
// running, refusing connections, 421/4xx, timing out), drops it durably into
// STATE_DIR/maildrop/ for the daemon to pick up later.
//
// Invariants:
//   - Every failure reaches the caller as an *ExitError (or *UsageError)
//     carrying a sysexits.h code: 0 ok, 64 usage, 65 data error, 67 unknown
//     user, 69 unavailable (permanent refusal, message too big), 75 temporary
//     failure. Exit 0 means the message is durable: accepted by the daemon
//     (which only says 250 after its own fsync) or fsynced into the maildrop.
//   - A local submission is never lost: the message is first staged in a
//     maildrop temp file (uncommitted, invisible to the pickup), so any
//     failure of the socket path short of a 5xx commits it to the maildrop
//     instead. After 250 it is discarded; after a 5xx too (the pickup would
//     refuse it the same way). A connection lost after the final dot is
//     ambiguous and falls back too: a possible duplicate, never a loss.
//   - Nothing is half-queued: a message that fails mid-way (too big, read
//     error) is aborted before the SMTP end-of-data dot, and a maildrop
//     temp file is removed before it is ever renamed into place.
//   - Only the header block is held in memory (bounded by MaxHeaderBytes);
//     the body is streamed.
//   - The Bcc header never leaves this process.
//   - -f, -F and recipients containing CR, LF or NUL are refused (RFC 5322
//     header injection); the message itself is passed on as-is apart from
//     line-ending normalisation (LF -> CRLF) and the sendmail "." convention.
//
// The maildrop file format (WriteDrop/ReadDrop) is the contract between this
// package and the daemon's pickup: a magic line "RELAYD-MAILDROP 1", one JSON
// line with the envelope, then the message with CRLF line endings. The daemon
// must treat it as untrusted input: ReadDrop validates strictly, and the
// submitting uid must be taken from the file's owner, not from the JSON.
package sendmail
