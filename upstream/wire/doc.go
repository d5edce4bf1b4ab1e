// Package wire is the one place where relayd's smarthost client goes
// around go-smtp's Client on the Client's own connection: it writes the
// message body in bulk (go-smtp's DotWriter goes byte by byte), sends
// pipelined command groups (RFC 2920; go-smtp waits for each reply) and
// RSET without go-smtp's re-EHLO, and reads their replies with a reader of
// its own.
//
// The seam is correct only because of details of go-smtp's Client that
// its documentation does not promise. They were read in go-smtp
// VerifiedGoSMTP (client.go, data.go, lengthlimit_reader.go) and each is
// tested against go-smtp itself in this folder:
//
//  1. Writes are flushed. Every Client method writes its command through
//     textproto and flushes it before reading the reply, so when a method
//     has returned (Data included, after its 354) the Client's buffered
//     writer is empty: what the seam writes goes out after everything the
//     Client sent, in order. (TestAssumeInterleave, the differential
//     tests.)
//  2. Reads take only what was asked for. The Client reads exactly one
//     reply per command, and neither reader can read what the server has
//     not sent; a server sends only replies to commands (RFC 5321 §4.1.1,
//     RFC 2920 §3.1). So go-smtp's buffered reader and the seam's are both
//     empty between exchanges, provided each exchange's replies are read
//     by the reader whose commands asked for them and the two never run at
//     once (one goroutine per session). (TestAssumeInterleave: go-smtp's
//     and the seam's commands alternate on one connection to a go-smtp
//     server, the seam's reader is empty after each of its exchanges, and
//     every reply reaches the reader that asked.)
//  3. DATA's writer is a fresh textproto DotWriter. Client.Data returns a
//     DataCommand writing through a DotWriter that has written nothing, so
//     the body may go to the connection directly, encoded exactly as that
//     DotWriter would encode it (quirks included: see dataWriter), with
//     only the final CRLF through the DataCommand, whose Close then writes
//     ".\r\n" and reads the reply. (FuzzWireData, TestWireDataDifferential:
//     the server receives byte for byte what go-smtp's own writer sends.)
//  4. Replies are read as go-smtp reads them: textproto's ReadResponse,
//     the enhanced code split off as go-smtp's toSMTPErr does
//     (Reply.SMTPError), reply lines shorter than GoSMTPLineLimit
//     (smtp.ErrTooLongLine beyond: TestAssumeLineLimit). go-smtp applies
//     its limit per read, so a long line whose start arrived in an
//     earlier read reaches it truncated, as if complete, and the next
//     reply fails; the seam refuses the line itself, whatever the reads.
//     go-smtp accepts only 250 to MAIL and the final dot, 25x to RCPT and
//     354 to DATA; upstream's pipelined path takes any 2xx as success (RFC
//     5321 §4.2.1): that is upstream's policy, not the seam's, and the
//     codes the two treat differently are among those the differential
//     test sends. (TestWireRepliesDifferential: random scripted replies,
//     multi-line, with and without enhanced codes, malformed, long lines,
//     cut into separate TCP writes, read by the seam as one pipelined
//     group and by go-smtp one command at a time, must give each command
//     the same result: code, enhanced code and text, or the same error.)
//  5. Deadlines are the connection's. The Client sets deadlines on its
//     connection around its own commands; the seam sets none: it must be
//     given the Client's connection, on which upstream sets a deadline for
//     every read and write (upstream/conn.go, tested there).
//
// The go-smtp version is a test input: TestGoSMTPVersion fails when the
// go-smtp in the build is not VerifiedGoSMTP, while the differential tests
// run against whatever version it is.
//
// Removing the seam (once go-smtp writes bodies in bulk, pipelines and
// resets without a new EHLO) is deleting this folder and
// upstream/pipeline.go, which holds only what pipelined replies mean, and
// in upstream dropping the pipelined branch of transactOnce, writing the
// body with io.Copy to the DataCommand instead of WriteData, and sending
// RSET and the 7-bit MAIL (mailcmd.go) with go-smtp's Reset and Mail.
package wire

// VerifiedGoSMTP is the go-smtp release whose Client the assumptions above
// were checked against.
const VerifiedGoSMTP = "v0.26.0"
