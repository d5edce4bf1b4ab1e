package readpath

import (
	"testing"

	"relayd/internal/modversion"
)

// goSMTPVersion is the go-smtp version of this build.
func goSMTPVersion(t *testing.T) string {
	v, err := modversion.Of("github.com/emersion/go-smtp", "../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The go-smtp version is a test input: the assumptions in the package
// doc hold for VerifiedGoSMTP only. The differential tests run whatever
// the version; this one says what to do when it moved.
func TestVerifiedGoSMTP(t *testing.T) {
	if v := goSMTPVersion(t); v != VerifiedGoSMTP {
		t.Fatalf("go-smtp changed from %s to %s: re-verify smtpd/readpath against go-smtp's conn.go/data.go/lengthlimit_reader.go and update VerifiedGoSMTP", VerifiedGoSMTP, v)
	}
}
