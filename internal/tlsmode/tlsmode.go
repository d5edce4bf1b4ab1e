// Package tlsmode names the three ways relayd may reach a smarthost, the
// values of the upstream.tls key (and of a route's tls): conf validates
// them, upstream dials by them and relayd check explains them.
package tlsmode

const (
	// StartTLS: plain connection upgraded with STARTTLS (RFC 3207),
	// usually port 587 or 25; the default.
	StartTLS = "starttls"
	// Implicit: TLS from the first byte (RFC 8314 §3.3), usually port 465.
	Implicit = "implicit"
	// None: no TLS at all, allowed to a loopback smarthost only.
	None = "none"
)

// Valid reports whether s is one of the modes ("" is not: the caller
// applies the default first).
func Valid(s string) bool {
	return s == StartTLS || s == Implicit || s == None
}
