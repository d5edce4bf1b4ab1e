// Package readpath is relayd's part of go-smtp's read path: the places
// where smtpd reads the client's bytes itself instead of leaving them to
// go-smtp's server, because go-smtp v0.26.0 has no setting for what relayd
// needs. It is named by that job (what go-smtp reads, and how DATA content
// is read), not by one of its parts:
//
//   - Gate (gate.go): sits between go-smtp's per-connection line limiter
//     and the connection, so command lines stay bounded at CmdLineLimit
//     while DATA and BDAT content lines are not (issue 16).
//   - Tap and the DATA fast path (tap.go, fast.go, dot.go): on a
//     cleartext connection, once go-smtp's DATA reader has consumed what
//     it had buffered, the content is decoded from the socket a buffer at
//     a time, and the bytes past its end are handed back to go-smtp.
//   - promptReader (prompt.go): elsewhere (TLS, DATA after BDAT), go-smtp's
//     DATA reader woken up while it waits, so that the intake sees what
//     arrived (a bare CR before the dot) without go-smtp's buffer filling.
//
// smtpd uses it through Session (Attach, Data, Content, Reset), and its
// net.Conn provides Tapped (reads through NewTap's Tap) and Waker. When
// go-smtp gets a fast DATA reader (go-smtp PR #312) and separate command
// and content line limits, removing this is deleting the folder and that
// wiring: idleConn.Read reads the socket, Session.Data passes go-smtp's
// reader on, Server sets MaxLineLength for commands only.
//
// # Assumptions about go-smtp (VerifiedGoSMTP), each tested
//
// Read against go-smtp's conn.go, data.go and lengthlimit_reader.go:
//
//  1. Conn has a field lineLimitReader, a pointer to a struct with
//     R io.Reader (the net.Conn go-smtp reads), LineLimit int and
//     curLineLength int; its Read counts only when LineLimit > 0 and
//     passes the source's bytes and errors on. (smtpd's TestGateInstalled,
//     TestAssumptionGateUnderLineReader.)
//  2. All of go-smtp's reads of a connection go through one bufio.Reader
//     over that lineLimitReader, which reads its source only when its
//     buffer is empty, and only on the session's goroutine; the DATA
//     reader returns a source error with the bytes it has and keeps its
//     state. (TestSeamVsGoSMTP: the fast path takes over, and the
//     messages match; smtpd's TestDataEdgeCasesBothPaths and
//     TestDataBareCRBeforeDotOverTLS for promptReader.)
//  3. The DATA reader's states and transitions are step's (dot.go),
//     byte for byte, including its quirks ("\r\r\n" does not start a
//     line; ".\r" then anything but LF drops both), and MaxMessageBytes
//     counts decoded content. (TestSeamVsGoSMTP, FuzzSeamVsGoSMTP.)
//  4. After Session.Data returns, go-smtp reads the DATA reader to its
//     end before the next command, and it calls Data for "DATA" without
//     arguments only, Session.Reset after every transaction.
//     (TestSeamVsGoSMTP: early replies, pipelined commands.)
//  5. BDAT hands Data an *io.PipeReader, go-smtp reads each chunk whose
//     arguments parse (bdatSize), and it sets LineLimit back after each
//     chunk. (TestSeamVsGoSMTP with BDAT streams.)
//  6. NewSession runs at the first EHLO/HELO (again after STARTTLS), so
//     the Gate is in before any MAIL. (TestSeamVsGoSMTP.)
//
// TestVerifiedGoSMTP fails on any other go-smtp version: re-read those
// files, re-run the tests, and update VerifiedGoSMTP.
package readpath

// VerifiedGoSMTP is the go-smtp version the assumptions above were
// checked against.
const VerifiedGoSMTP = "v0.26.0"
