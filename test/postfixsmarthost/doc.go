// Package postfixsmarthost is the end-to-end test of relayd against a real
// Postfix as its smarthost (issue 20). It has no API.
//
// The test starts a private Postfix instance: its own config directory,
// queue and data directories under a temporary directory, smtpd on a free
// loopback port, virtual(8) delivering every accepted message for
// example.net into one Maildir. It never touches the host's Postfix
// (/etc/postfix is only read as meta_directory, port 25 is never used,
// only its own instance is stopped, with `postfix -c DIR stop`).
//
// Postfix refuses one message at the end of DATA (header_checks REJECT),
// defers another there (header_checks DEFER: a 4xx to the final dot, like
// an ISP's "451 quota exceeded"), and refuses one recipient at RCPT
// (check_recipient_access). Good messages follow each on the same
// connection. The test checks that every good message arrives once and
// intact, that nothing empty arrives, that only the refused ones are
// bounced, and that the deferred one stays queued.
//
// The same scenario runs against Exim (exim_test.go) when RELAYD_EXIM_ROOT
// names a directory its Debian packages were extracted into.
//
// It runs only as root with Postfix installed and RELAYD_POSTFIX_TEST=1,
// so that `go test ./...` on a developer machine or a shared one does not
// start mail servers; test/real-mtas.sh (called by .ci/run) sets both.
package postfixsmarthost
