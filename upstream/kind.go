package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"
)

// Kind names the cause of a session failure, so that callers (relayd
// check, metrics) switch on it instead of matching the error's text. The
// values are stable identifiers, not prose; Error.Hint says the fix.
type Kind string

// Kinds of session failure, roughly in session order. KindOther is any
// failure none of the others describes (the reply or error says what).
const (
	KindOther Kind = ""
	// StageConnect
	KindRefused        Kind = "connection-refused" // ECONNREFUSED
	KindNoHost         Kind = "no-such-host"       // the name does not resolve
	KindConnectTimeout Kind = "connect-timeout"    // no answer to the TCP handshake
	// TLS, at the handshake (StageTLS) or wherever the error surfaced
	KindCertName      Kind = "certificate-name"      // the certificate is for another name
	KindCertAuthority Kind = "certificate-authority" // signed by an unknown CA
	KindCertExpired   Kind = "certificate-expired"   // expired or not yet valid
	KindCertInvalid   Kind = "certificate-invalid"   // invalid for another reason
	KindCertRejected  Kind = "certificate-rejected"  // any other verification failure
	KindNotTLS        Kind = "not-tls"               // the peer answered TLS with plain text
	// StageGreeting (RFC 5321 §4.3.1)
	KindGreetingTimeout Kind = "greeting-timeout" // connected, no 220 in time
	KindGreetingRefused Kind = "greeting-refused" // 554 (or 421) instead of 220
	// StageEHLO
	KindEHLORefused Kind = "ehlo-refused"
	// StageSTARTTLS (RFC 3207)
	KindNoSTARTTLS      Kind = "no-starttls" // not in the EHLO keywords
	KindSTARTTLSRefused Kind = "starttls-refused"
	// StageAuth (RFC 4954)
	KindAuthRejected Kind = "auth-rejected" // 535: the credentials are wrong
	KindNoAUTH       Kind = "no-auth"       // AUTH is not in the EHLO keywords
	KindAuthRefused  Kind = "auth-refused"  // any other reply to AUTH
	KindAuthFailed   Kind = "auth-failed"   // no reply: no usable mechanism, no token, ...
)

// Kind classifies e. A kind set where e was made wins; otherwise it is
// derived from the stage, the reply code and the wrapped error's type.
func (e *Error) Kind() Kind {
	if e.kind != KindOther {
		return e.kind
	}
	return classify(e.Stage, e.Code, e.Err)
}

func classify(stage Stage, code int, err error) Kind {
	var (
		hostErr   x509.HostnameError
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		dnsErr    *net.DNSError
	)
	switch {
	case stage == StageConnect && errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case stage == StageConnect && errors.As(err, &dnsErr):
		return KindNoHost
	case stage == StageConnect && isTimeout(err):
		return KindConnectTimeout
	case errors.As(err, &hostErr):
		return KindCertName
	case errors.As(err, &unknownCA):
		return KindCertAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return KindCertExpired
	case errors.As(err, &invalid):
		return KindCertInvalid
	case errors.As(err, &verify):
		return KindCertRejected
	case errors.As(err, &record):
		return KindNotTLS
	case stage == StageGreeting && isTimeout(err):
		return KindGreetingTimeout
	case stage == StageGreeting && code != 0:
		return KindGreetingRefused
	case stage == StageSTARTTLS && code != 0:
		return KindSTARTTLSRefused
	case stage == StageEHLO && code != 0:
		return KindEHLORefused
	case stage == StageAuth && code == 535:
		return KindAuthRejected
	case stage == StageAuth && code != 0:
		return KindAuthRefused
	case stage == StageAuth:
		return KindAuthFailed
	}
	return KindOther
}

// Permanent reports whether a failure of kind k needs the admin: it does
// not clear by retrying (the certificate kinds and a port without TLS).
func (k Kind) Permanent() bool {
	switch k {
	case KindCertName, KindCertAuthority, KindCertExpired, KindCertInvalid, KindCertRejected, KindNotTLS:
		return true
	}
	return false
}

// hint is the one-line fix logged with a failure of kind k to addr, ""
// when the kind has none of its own.
func (k Kind) hint(addr string) string {
	switch k {
	case KindCertName:
		return "the smarthost certificate does not match the host in upstream.address: use a name the certificate lists"
	case KindCertAuthority:
		return "the smarthost certificate is signed by an unknown authority: add its CA to upstream.ca_file"
	case KindCertExpired, KindCertInvalid:
		return "the smarthost certificate is invalid (expired or not for a server)"
	case KindCertRejected:
		return "the smarthost certificate was rejected"
	case KindNotTLS:
		return "the server does not speak TLS on this port: with port 587/25 use tls = \"starttls\""
	case KindRefused:
		return "connection refused: is upstream.address (host and port) right and the smarthost up?"
	case KindGreetingTimeout:
		if strings.HasSuffix(addr, ":465") {
			return "no SMTP greeting on port 465: it expects TLS at once, set tls = \"implicit\""
		}
		return "the smarthost accepted the connection but sent no greeting within upstream.timeout: it is overloaded, or something (a firewall, a proxy) holds the connection; counted as a smarthost failure"
	case KindAuthRejected:
		return "the smarthost rejected the credentials: check upstream.username and upstream.password_file"
	case KindNoSTARTTLS:
		return "set tls = \"implicit\" with port 465? (credentials are never sent in clear)"
	case KindNoAUTH:
		return "credentials are configured but the smarthost does not advertise AUTH on this port"
	}
	return ""
}
