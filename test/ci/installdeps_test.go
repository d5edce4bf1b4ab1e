// Package ci tests .ci/install-deps and .ci/run's promises to the machine
// they run on (issue 17): no service of the host is started or stopped, an
// existing policy-rc.d comes back exactly, the dpkg lock is waited for,
// and no terminal is needed. apt-get, dpkg-query, postfix, systemctl and
// go are stand-ins on PATH that record how they were called; the
// policy-rc.d path is a temporary file (RELAYD_POLICY_RC_D).
package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fake writes an executable shell script.
func fake(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func runInstallDeps(t *testing.T, policy string, aptExit int) (log string, err error) {
	t.Helper()
	bin := t.TempDir()
	rec := filepath.Join(t.TempDir(), "calls")
	// dpkg-query: every package is missing. apt-get: records its
	// arguments, whether stdin is a terminal, and what policy-rc.d says
	// during the call.
	fake(t, bin, "dpkg-query", "exit 1\n")
	fake(t, bin, "apt-get", `echo "apt-get $* | DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >>`+rec+`
if [ -t 0 ]; then echo "apt-get stdin is a terminal" >>`+rec+`; fi
"$RELAYD_POLICY_RC_D" postfix start; echo "policy-rc.d during apt-get: exit $?" >>`+rec+`
exit `+string(rune('0'+aptExit))+"\n")
	for _, svc := range []string{"postfix", "systemctl", "service", "invoke-rc.d"} {
		fake(t, bin, svc, `echo "`+svc+` $*" >>`+rec+"\n")
	}
	fake(t, bin, "go", `case "$1 $2" in "env GOBIN") echo `+bin+`;; esac
echo "go $*" >>`+rec+"\n")
	fake(t, bin, "staticcheck", "echo 'staticcheck 2026.2.2 (0.8.2)'\n")
	c := exec.Command("bash", "../../.ci/install-deps")
	c.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin", "CI=true", "RELAYD_POLICY_RC_D="+policy)
	c.Stdin = nil // /dev/null
	out, err := c.CombinedOutput()
	b, _ := os.ReadFile(rec)
	t.Logf("install-deps output:\n%s\ncalls:\n%s", out, b)
	return string(b), err
}

func TestInstallDepsLeavesServicesAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("install-deps runs apt as root (or through sudo, which this test does not fake)")
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy-rc.d")
	const mine = "#!/bin/sh\n# the admin's own policy\nexit 0\n"
	if err := os.WriteFile(policy, []byte(mine), 0o700); err != nil {
		t.Fatal(err)
	}
	calls, err := runInstallDeps(t, policy, 0)
	if err != nil {
		t.Fatalf("install-deps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(calls), "\n")
	var apt []string
	for _, l := range lines {
		for _, svc := range []string{"postfix ", "systemctl ", "service ", "invoke-rc.d "} {
			if strings.HasPrefix(l, svc) {
				t.Errorf("install-deps ran %q: it must not touch the host's services", l)
			}
		}
		if strings.HasPrefix(l, "apt-get ") {
			apt = append(apt, l)
		}
		if strings.Contains(l, "stdin is a terminal") {
			t.Errorf("apt-get ran with a terminal on stdin")
		}
	}
	if len(apt) != 2 || !strings.Contains(apt[0], " update") || !strings.Contains(apt[1], " install -y") {
		t.Fatalf("apt-get calls %q, want one update then one install -y", apt)
	}
	for _, a := range apt {
		if !strings.Contains(a, "-o DPkg::Lock::Timeout=600") || !strings.Contains(a, "DEBIAN_FRONTEND=noninteractive") {
			t.Errorf("%q: want -o DPkg::Lock::Timeout=600 and DEBIAN_FRONTEND=noninteractive", a)
		}
	}
	if n := strings.Count(calls, "policy-rc.d during apt-get: exit 101"); n != 2 {
		t.Errorf("policy-rc.d did not forbid service starts (exit 101) during both apt-get calls")
	}
	b, err := os.ReadFile(policy)
	st, serr := os.Stat(policy)
	if err != nil || serr != nil || string(b) != mine || st.Mode().Perm() != 0o700 {
		t.Errorf("the existing policy-rc.d was not put back exactly: %q %v %v", b, st.Mode(), err)
	}
}

// With no policy-rc.d before, none is left after, even when apt fails.
func TestInstallDepsRemovesItsPolicyOnFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("install-deps runs apt as root (or through sudo, which this test does not fake)")
	}
	policy := filepath.Join(t.TempDir(), "policy-rc.d")
	if _, err := runInstallDeps(t, policy, 1); err == nil {
		t.Error("install-deps succeeded although apt-get failed")
	}
	if _, err := os.Lstat(policy); !os.IsNotExist(err) {
		t.Errorf("policy-rc.d left behind after a failed install: %v", err)
	}
}
