package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildTestsum builds .ci/testsum, which .ci/run pipes go test -json into.
func buildTestsum(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testsum")
	if out, err := exec.Command("go", "build", "-o", bin, "../../.ci/testsum").CombinedOutput(); err != nil {
		t.Fatalf("go build .ci/testsum: %v\n%s", err, out)
	}
	return bin
}

// events is what `go test -json` printed for a package with a passing
// test and subtest, a skipped test and a failing one, plus a package that
// did not build.
const events = `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"run","Package":"p","Test":"TestA/sub"}
{"Action":"pass","Package":"p","Test":"TestA/sub","Elapsed":0}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0}
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:4: port 25 is taken\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB","Elapsed":0}
{"Action":"run","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:5: boom\n"}
{"Action":"fail","Package":"p","Test":"TestC","Elapsed":0}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}
{"Action":"fail","Package":"p","Elapsed":0.01}
{"ImportPath":"q [q.test]","Action":"build-output","Output":"q/x.go:1: undefined: y\n"}
{"Action":"output","Package":"q","Output":"FAIL\tq [build failed]\n"}
{"Action":"fail","Package":"q","Elapsed":0,"FailedBuild":"q [q.test]"}
`

func TestTestsumCounts(t *testing.T) {
	bin := buildTestsum(t)
	steps := filepath.Join(t.TempDir(), "steps")
	os.WriteFile(steps, []byte("pass gofmt\nskip image test\nfail staticcheck (exit 1)\n"), 0o644)

	c := exec.Command(bin, "-live")
	c.Stdin = strings.NewReader(events)
	live, err := c.Output()
	if err != nil {
		t.Fatalf("-live: %v", err)
	}
	for _, want := range []string{"SKIP p TestB: b_test.go:4: port 25 is taken", "=== FAIL p TestC", "c_test.go:5: boom",
		"q/x.go:1: undefined: y", "=== FAIL q (no failing test"} {
		if !strings.Contains(string(live), want) {
			t.Errorf("-live output lacks %q:\n%s", want, live)
		}
	}
	if strings.Contains(string(live), "passed,") {
		t.Errorf("-live printed the counts:\n%s", live)
	}

	c = exec.Command(bin, "-summary", steps)
	c.Stdin = strings.NewReader(events)
	out, err := c.Output()
	if err == nil {
		t.Error("testsum exited 0 with failures")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// TestA, TestA/sub, gofmt pass; TestC, q, staticcheck fail; TestB, image test skipped.
	if got, want := lines[len(lines)-1], "3 passed, 3 failed, 2 skipped"; got != want {
		t.Errorf("last line %q, want %q:\n%s", got, want, out)
	}

	c = exec.Command(bin, "-summary")
	c.Stdin = strings.NewReader(`{"Action":"pass","Package":"p","Test":"TestA"}` + "\n")
	if out, err := c.Output(); err != nil || strings.TrimSpace(string(out)) != "1 passed, 0 failed, 0 skipped" {
		t.Errorf("all passed: %q, %v", out, err)
	}
	c = exec.Command(bin, "-summary")
	c.Stdin = strings.NewReader("")
	if _, err := c.Output(); err == nil {
		t.Error("no test at all must not pass")
	}
}
