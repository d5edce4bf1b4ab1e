// Package upstream is the smarthost client: it implements queue.Deliverer by
// handing each Delivery to the ISP smarthost over SMTP with TLS and AUTH.
//
// Invariants:
//   - TLS is verified (RootCAs, ServerName = the host of the relay address,
//     TLS 1.2 or later) unless the admin explicitly opts out; tls = "none" is
//     refused for any relay that is not loopback.
//   - The EHLO name is always Config.Hostname, before and after STARTTLS and
//     after every RSET (go-smtp's own STARTTLS helpers would say "localhost",
//     so the upgrade is done here: see session.go).
//   - Credentials are sent only over TLS (or to loopback with tls = "none"),
//     and are never logged. With Config.Auth "xoauth2" or "oauthbearer" the
//     credential is an OAuth2 access token from Config.Tokens (sasl.go);
//     failing to get one is a StageAuth *Error like a refused password.
//   - Every Read and Write on the wire runs under a deadline of
//     Config.Timeout, and cancelling the context closes the connection, so no
//     delivery can hang.
//   - A failure of the session (connect, TLS, AUTH, 421, timeout, dropped
//     connection, no reply after the body) is returned as *Error and never
//     turns into a recipient failure: the queue defers every recipient. A
//     message is reported sent only after the server's 2xx to the final dot,
//     so a lost reply causes a retry (a possible duplicate), never a loss.
//   - The body is dot-stuffed in bulk by dataWriter (data.go) and written
//     to the same deadline-wrapped connection go-smtp uses, between the 354
//     and go-smtp's own final ".\r\n", so the Client's state stays valid for
//     the next transaction; a failed body write never sends the final dot.
//   - With a server that offers PIPELINING (RFC 2920), a transaction whose
//     envelope needs only BODY and SIZE goes in two writes: MAIL, every RCPT
//     and DATA, then body and final dot (pipeline.go). Every reply is read,
//     in order, before anything else is sent; DSN and SMTPUTF8 envelopes use
//     go-smtp's command-by-command path.
//   - A reused connection gets RSET only when its previous transaction was
//     left open; a reply to the final dot ends one (RFC 5321 §4.1.1.4).
//   - At most Config.MaxConns connections exist at once, idle ones included.
package upstream
