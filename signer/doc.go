// Package signer DKIM-signs outgoing mail (RFC 6376), loads and generates the
// signing keys, and renders the DNS TXT records that publish them.
//
// Invariants:
//   - Keys are read only here. Load reads every configured key and reports every
//     problem at once; a key file that group or others may access is refused,
//     and RSA keys shorter than 1024 bits are refused (RFC 8301 §3.2).
//   - A domain whose key failed to load is never signed for and never passed
//     over: Sign returns an error for it, so the caller answers 451 4.3.0 and
//     mail is never sent unsigned by accident. Likewise any signing failure
//     is an error from finish, never a message without its signature.
//   - Signing streams, with go-msgauth's dkim.NewSigner (never dkim.Sign,
//     which holds the whole message): only the header block is buffered here
//     (at most MaxHeaderBytes), so that h= can be built from it; then one
//     dkim.Signer per key (RSA and Ed25519 dual signing, RFC 8463) gets the
//     header and the body streams through all of them.
//   - Every signature is a=rsa-sha256 or a=ed25519-sha256, c=relaxed/relaxed,
//     t=, and an explicit h= list that oversigns the fields a forger would
//     want to add (RFC 6376 §8.15), so adding another From, Subject, ...
//     breaks it. Received, Return-Path and DKIM-Signature are never signed.
//   - The signature fields from finish are CRLF-terminated with lines of at
//     most 998 characters (RFC 5322 §2.1.1); finish checks this rather than
//     trusting go-msgauth's layout, and h= is bounded so it always holds.
//   - Each dkim.Signer runs a goroutine from the end of the header until it
//     is closed: finish closes them on every path, and the writer from Sign
//     is an io.Closer that a caller giving up before finish must Close.
//   - The input is the message as it goes on the wire: CRLF line endings, no
//     bare CR or LF (cleanup guarantees this).
//
// t= comes from go-msgauth's own time.Now (an unexported package variable):
// Options.Clock cannot set it and is ignored, and since b= signs t= the
// golden vectors in testdata/golden compare the signature with t= and b=
// masked, and check those two by time window and by verification instead.
// go-msgauth's verifier and dkimpy check every signature in the tests.
package signer
