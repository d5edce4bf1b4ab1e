// Command testsum reads `go test -json` events on stdin and prints what a
// CI log needs: one line per package (as `go test` prints it), the whole
// output of every failed test, each skipped test with its reason, and last
// a line alone, exactly
//
//	N passed, N failed, N skipped
//
// counting tests and subtests (a package that fails without a failing
// test, e.g. a build error or a panic in TestMain, counts as one failed).
// Each further argument is a file of results of .ci/run's own steps, one
// "pass|fail|skip NAME [reason]" per line, added to the counts.
//
// With -live it prints all but the counts (for watching a run); with
// -summary only the steps and the counts (for the end of a run, reading
// the same events again from a file).
//
// It exits 1 if anything failed or if it saw no test at all, so a pipe
// into it keeps CI red on failure. It lives under .ci/ so that ./...
// does not include it.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	Elapsed    float64
	ImportPath string // build-output, build-fail
}

// maxLines bounds what is kept of one test's output.
const maxLines = 400

type counts struct{ pass, fail, skip int }

type summer struct {
	out      io.Writer
	c        counts
	output   map[string][]string // "pkg\x00test" (test "" = the package) -> lines
	failed   map[string]bool     // packages with a failed test
	sawTests bool
}

func key(pkg, test string) string { return pkg + "\x00" + test }

func (s *summer) add(k, line string) {
	l := append(s.output[k], line)
	if len(l) > maxLines {
		l = append(l[:0:0], l[len(l)-maxLines:]...)
		l[0] = "    [... earlier output left out ...]\n"
	}
	s.output[k] = l
}

func (s *summer) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
		return
	case "output":
		s.add(key(e.Package, e.Test), e.Output)
		return
	case "pass", "fail", "skip":
	default:
		return
	}
	k := key(e.Package, e.Test)
	lines := s.output[k]
	delete(s.output, k)
	if e.Test != "" {
		s.sawTests = true
		switch e.Action {
		case "pass":
			s.c.pass++
		case "fail":
			s.c.fail++
			s.failed[e.Package] = true
			fmt.Fprintf(s.out, "=== FAIL %s %s\n", e.Package, e.Test)
			for _, l := range lines {
				fmt.Fprint(s.out, l)
			}
		case "skip":
			s.c.skip++
			fmt.Fprintf(s.out, "SKIP %s %s: %s\n", e.Package, e.Test, skipReason(lines))
		}
		return
	}
	// The package's own result: its last output line is go test's
	// "ok  pkg 1.2s" / "FAIL pkg" / "?  pkg [no test files]".
	if e.Action == "fail" && !s.failed[e.Package] {
		s.c.fail++
		fmt.Fprintf(s.out, "=== FAIL %s (no failing test: build error, panic or TestMain)\n", e.Package)
		for _, l := range lines {
			fmt.Fprint(s.out, l)
		}
		return
	}
	if n := len(lines); n > 0 {
		fmt.Fprint(s.out, lines[n-1])
	}
}

// skipReason is the message t.Skip printed: the output lines between
// "=== RUN" and "--- SKIP", joined.
func skipReason(lines []string) string {
	var r []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		r = append(r, t)
	}
	if len(r) == 0 {
		return "(no reason given)"
	}
	return strings.Join(r, " ")
}

func (s *summer) steps(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		res, rest, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch res {
		case "pass":
			s.c.pass++
		case "fail":
			s.c.fail++
		case "skip":
			s.c.skip++
		case "":
			continue
		default:
			return fmt.Errorf("%s: bad line %q", name, sc.Text())
		}
		fmt.Fprintf(s.out, "ci step %s: %s\n", strings.ToUpper(res), rest)
	}
	return sc.Err()
}

func main() {
	live := flag.Bool("live", false, "print package lines, failures and skips, not the counts")
	summary := flag.Bool("summary", false, "print only the steps and the counts")
	flag.Parse()
	s := &summer{out: os.Stdout, output: map[string][]string{}, failed: map[string]bool{}}
	if *summary {
		s.out = io.Discard
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(s.out, "%s\n", line) // not an event: pass it on
			continue
		}
		s.event(e)
	}
	bad := false
	if err := sc.Err(); err != nil {
		fmt.Fprintf(s.out, "testsum: reading go test output: %v\n", err)
		bad = true
	}
	s.out = os.Stdout
	if !s.sawTests {
		fmt.Fprintln(s.out, "testsum: no test ran")
		bad = true
	}
	if *live {
		return
	}
	for _, name := range flag.Args() {
		if err := s.steps(name); err != nil {
			fmt.Fprintf(s.out, "testsum: %v\n", err)
			bad = true
		}
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.c.pass, s.c.fail, s.c.skip)
	if bad || s.c.fail > 0 {
		os.Exit(1)
	}
}
