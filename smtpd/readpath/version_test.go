package readpath

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

const goSMTPModule = "github.com/emersion/go-smtp"

// goSMTPVersion is the go-smtp version of this build: from the build
// info's Deps, or, where a test binary lists none, from go.mod (a replace
// directive for go-smtp wins).
func goSMTPVersion(t *testing.T) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == goSMTPModule {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatalf("no build info for %s and no go.mod: %v", goSMTPModule, err)
	}
	v := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "replace" {
			f = f[1:]
		}
		switch {
		case len(f) < 2 || f[0] != goSMTPModule:
		case strings.Contains(line, "=>"):
			v = f[len(f)-1] // a replacement (a local one shows as its path)
		case v == "":
			v = f[1]
		}
	}
	if v == "" {
		t.Fatalf("%s is in neither the build info nor go.mod", goSMTPModule)
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
