// Package upstream is the smarthost client: it implements queue.Deliverer by
// handing each Delivery to the ISP smarthost over SMTP with TLS and AUTH.
//
// Invariants:
//   - TLS is verified (RootCAs, ServerName = the host of the relay address,
//     TLS 1.2 or later) unless the admin explicitly opts out; tls = "none" is
//     refused for any relay that is not loopback.
//   - The EHLO name is always Config.Hostname, before and after STARTTLS
//     (go-smtp's own STARTTLS helpers would say "localhost", so the upgrade
//     is done here: see session.go). EHLO is never sent again on an
//     established session: RSET is sent by the session itself, not by
//     go-smtp's Reset, which would re-send EHLO.
//   - Credentials are sent only over TLS (or to loopback with tls = "none"),
//     and are never logged. With Config.Auth "xoauth2" or "oauthbearer" the
//     credential is an OAuth2 access token from Config.Tokens (sasl.go);
//     failing to get one is a StageAuth *Error like a refused password.
//   - Every Write on the wire runs under a deadline of Config.Timeout,
//     every reply as a whole (all its continuation lines) under one
//     Config.Timeout, and a delivery as a whole under 3*Timeout plus its
//     size at MinDataRate (conn.go); a reply over 2 KiB a line or 64 KiB /
//     1000 lines in all is refused, so memory stays bounded. Cancelling the
//     context closes the connection. No delivery can hang.
//   - After a 535 (credentials rejected) no login to that relay is tried
//     until its backoff expires, one probe at a time (authgate.go); a relay
//     that timed out goes after the fallbacks for a while (health.go); a
//     rate-limit reply is a session *Error, so the queue backs off from the
//     whole smarthost (throttle.go).
//   - A failure of the session (connect, TLS, AUTH, 421, timeout, dropped
//     connection, no reply after the body) is returned as *Error and never
//     turns into a recipient failure: the queue defers every recipient. A
//     message is reported sent only after the server's 2xx to the final dot,
//     so a lost reply causes a retry (a possible duplicate), never a loss.
//   - The body is dot-stuffed in bulk by the wire seam (upstream/wire) and
//     written to the same deadline-wrapped connection go-smtp uses, between
//     the 354 and go-smtp's own final ".\r\n", so the Client's state stays
//     valid for the next transaction; a failed body write never sends the
//     final dot.
//   - With a server that offers PIPELINING (RFC 2920), a transaction whose
//     envelope needs only BODY and SIZE goes in two writes: MAIL, every RCPT
//     and DATA, then body and final dot (pipeline.go). Every reply is read,
//     in order, before anything else is sent; DSN and SMTPUTF8 envelopes use
//     go-smtp's command-by-command path.
//   - Only a 2xx to the final dot ends a transaction cleanly. After any
//     other end (a refused MAIL, every RCPT refused, a refused DATA, a 4xx
//     or 5xx to the final dot) the next MAIL on the connection is preceded
//     by RSET, so a server still holding the old envelope cannot add the
//     next message to it. No content, not even a lone dot, follows a 354
//     that came after a refused envelope: the connection is dropped.
//   - A 503 is never a recipient's verdict: at MAIL the session is reset
//     and MAIL retried once; anywhere else, or twice, the delivery is
//     deferred as a session *Error.
//   - At most Config.MaxConns connections exist at once, idle ones included.
package upstream
