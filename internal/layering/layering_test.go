// Package layering holds no code: its test checks the one-way package
// dependencies the architecture asks for, with go list, so a new import
// that reaches into the spool from a stage that only speaks the shared
// types (package envelope) fails the suite instead of going unnoticed.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden maps a package to the packages it must not depend on, even
// indirectly (test files excluded: tests may use a real queue).
var forbidden = map[string][]string{
	// The stages that speak the queue's vocabulary but must not reach its
	// store: network input, the smarthost client, the notice composer,
	// the metrics, and the intake itself.
	"relayd/smtpd":    {"relayd/queue"},
	"relayd/upstream": {"relayd/queue"},
	"relayd/dsn":      {"relayd/queue", "relayd/envelope"},
	"relayd/metrics":  {"relayd/queue"},
	"relayd/cleanup":  {"relayd/queue"},
	// The maildrop daemon and the notifier feed the intake; the queue
	// reaches them only through the wiring.
	"relayd/pickup": {"relayd/queue"},
	"relayd/notify": {"relayd/queue"},
	// The authenticator and the signer take their own options; the
	// wiring converts the config.
	"relayd/auth":   {"relayd/conf"},
	"relayd/signer": {"relayd/conf"},
	// The leaf itself.
	"relayd/envelope": {"relayd/queue", "relayd/conf"},
	// The built-in values conf, queue and upstream share.
	"relayd/internal/defaults": {"relayd/conf", "relayd/queue", "relayd/upstream"},
}

func TestNoForbiddenImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command:", err)
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, b := range bad {
			if deps[b] {
				t.Errorf("%s depends on %s (go list -deps %s)", pkg, b, pkg)
			}
		}
	}
}
