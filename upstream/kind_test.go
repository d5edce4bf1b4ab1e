package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"syscall"
	"testing"
)

// TestKind: each diagnosis relayd check gives comes from a Kind, derived
// from the error's type, stage and reply code, never from its text.
func TestKind(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	reply := func(code int, msg string) error { return &textproto.Error{Code: code, Msg: msg} }
	cases := []struct {
		stage Stage
		err   error
		want  Kind
	}{
		{StageConnect, refused, KindRefused},
		{StageConnect, &net.DNSError{Err: "no such host", Name: "smtp.example", IsNotFound: true}, KindNoHost},
		{StageConnect, timeout, KindConnectTimeout},
		{StageConnect, context.DeadlineExceeded, KindConnectTimeout},
		{StageTLS, &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "a"}}, KindCertName},
		{StageTLS, x509.UnknownAuthorityError{}, KindCertAuthority},
		{StageTLS, x509.CertificateInvalidError{Reason: x509.Expired}, KindCertExpired},
		{StageTLS, x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}, KindCertInvalid},
		{StageTLS, &tls.CertificateVerificationError{Err: errors.New("other")}, KindCertRejected},
		{StageTLS, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, KindNotTLS},
		{StageGreeting, timeout, KindGreetingTimeout},
		{StageGreeting, reply(554, "5.7.1 go away"), KindGreetingRefused},
		{StageGreeting, reply(421, "4.3.2 busy"), KindGreetingRefused},
		{StageEHLO, reply(550, "bad name"), KindEHLORefused},
		{StageSTARTTLS, reply(454, "4.7.0 TLS not available"), KindSTARTTLSRefused},
		{StageAuth, reply(535, "5.7.8 bad credentials"), KindAuthRejected},
		{StageAuth, reply(454, "4.7.0 try later"), KindAuthRefused},
		{StageAuth, errors.New("no supported AUTH mechanism"), KindAuthFailed},
		{StageMail, reply(451, "4.3.0 later"), KindOther},
		{StageData, fmt.Errorf("wrapped: %w", errors.New("x")), KindOther},
	}
	for _, c := range cases {
		e := sessionError(c.stage, "smtp.example:587", c.err)
		if got := e.Kind(); got != c.want {
			t.Errorf("%s %v: Kind = %q, want %q", c.stage, c.err, got, c.want)
		}
		if e.Kind().Permanent() == e.Temporary {
			t.Errorf("%s %v: Temporary = %v for kind %q", c.stage, c.err, e.Temporary, e.Kind())
		}
	}
	// Kinds known where the error is made, whatever its text says.
	for _, k := range []Kind{KindNoSTARTTLS, KindNoAUTH} {
		e := &Error{Stage: StageAuth, Err: errors.New("something else"), kind: k}
		if e.Kind() != k {
			t.Errorf("explicit kind %q lost: %q", k, e.Kind())
		}
	}
	if h := KindGreetingTimeout.hint("smtp.example:465"); h != `no SMTP greeting on port 465: it expects TLS at once, set tls = "implicit"` {
		t.Errorf("465 hint = %q", h)
	}
}
