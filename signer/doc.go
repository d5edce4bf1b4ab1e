// Package signer DKIM-signs outgoing mail (RFC 6376), loads and generates the
// signing keys, and renders the DNS TXT records that publish them.
//
// Invariants:
//   - Keys are read only here. Load reads every configured key and reports every
//     problem at once; a key file that group or others may access is refused,
//     and RSA keys shorter than 1024 bits are refused (RFC 8301 §3.2).
//   - A domain whose key failed to load is never signed for and never passed
//     over: Sign returns an error for it, so the caller answers 451 4.3.0 and
//     mail is never sent unsigned by accident.
//   - Signing streams: only the header block is buffered (at most 1 MiB); the
//     body is canonicalised and hashed once, in one pass, and that body hash is
//     shared by every signature of the message (dual RSA + Ed25519 signing,
//     RFC 8463), since all of them use relaxed body canonicalisation and
//     SHA-256.
//   - Every signature is a=rsa-sha256 or a=ed25519-sha256, c=relaxed/relaxed,
//     t= from the injected clock, and an explicit h= list that oversigns the
//     fields a forger would want to add (RFC 6376 §8.15), so adding another
//     From, Subject, ... breaks it. Received, Return-Path and DKIM-Signature
//     are never signed.
//   - The input is the message as it goes on the wire: CRLF line endings, no
//     bare CR or LF (cleanup guarantees this).
//
// The signing code is written here rather than taken from go-msgauth's
// dkim.NewSigner because that signer reads the time from a package variable
// (t= cannot come from an injected clock, so golden vectors cannot be stable)
// and hashes the body once per key. go-msgauth's verifier and dkimpy check
// this implementation in the tests.
package signer
