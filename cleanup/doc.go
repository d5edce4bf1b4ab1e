// Package cleanup is relayd's single intake: every message, whether from the
// SMTP listener, the sendmail command, the maildrop or a generated notice,
// passes through Cleanup.Submit on its way into the queue (the idea of
// Postfix's cleanup(8)).
//
// What it does, in one streaming pass and in this order:
//   - normalises line endings: a bare LF becomes CRLF; a bare CR or a NUL
//     byte rejects the message (RFC 5322 §2.3, RFC 5321 §2.3.8);
//   - reads the header block (bounded by MaxHeaderBytes) and rejects a loop
//     (more than MaxReceived Received fields, RFC 5321 §6.3);
//   - removes Bcc and Return-Path (RFC 6409 §8, RFC 5321 §4.4);
//   - for local senders (no domain, or one of the host's own names: see
//     Host.LocalDomains), rewrites the From address to rewrite.sender,
//     keeping the display name; qualifies addresses without a domain in
//     the address fields with the hostname (RFC 5322 §3.4.1);
//   - completes what a submission agent must add (RFC 6409 §8.1-8.3):
//     Date, Message-ID and From when missing;
//   - prepends its Received trace field (RFC 5321 §4.4);
//   - when a body line is over 998 octets (RFC 5322 §2.1.1), or the body
//     has 8-bit octets and the smarthost did not offer 8BITMIME when last
//     asked (RFC 6152 §3: the downgrade is done here, so the signature
//     covers it; SevenBitOnly), re-reads the
//     draft and re-encodes the affected MIME parts into a second draft,
//     which replaces the first, with its own queue ID and signature
//     (internal/reencode; logged with fixed=long-lines); a part whose
//     encoding cannot be changed is refused with 550 5.6.0;
//   - streams the result into the queue's body file and, when a DKIM key
//     covers the From domain, into the signer;
//   - with routes (Config.Route), splits a message whose recipients take
//     several smarthosts into one queue entry per smarthost: the first is
//     written as the message is read; each other one gets its own copy of
//     the header (its smarthost's identity rewrite, Config.Identity), its
//     own prefix and signature, and the body copied from the first
//     entry's draft (Draft.Contents) into its own draft, so each entry is
//     an ordinary queue message with the queue's durability. Submit
//     returns the IDs space-separated, once every entry is committed; one
//     failed commit makes it fail with 4xx (entries already committed are
//     then duplicated by the client's retry, never lost).
//
// Invariants:
//   - Existing header fields are written byte for byte as received (apart
//     from line-ending normalisation, the removals and the local-From
//     rewrite above, "@hostname" appended to addresses without a domain,
//     and the obsolete "Name :" written as "Name:"). The header is read
//     with the scanner the sendmail command, the signer and dsn use
//     (internal/hdrscan). Added fields travel as a prefix stored beside the
//     body, so the body file is written once and never rewritten.
//   - Memory is bounded by MaxHeaderBytes plus fixed buffers, whatever the
//     message size or line length (a split message holds a second copy
//     of its header while it writes each other entry).
//   - Every error returned by Submit is an *smtp.SMTPError carrying the
//     right code: 4xx for what may succeed later (disk full, I/O, signing
//     failure), 5xx for what never will (bad content, too big, loop).
//   - A message whose domain has a DKIM key is never queued unsigned: a
//     signing failure is 451 4.3.0.
package cleanup
