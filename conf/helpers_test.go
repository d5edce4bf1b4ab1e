package conf

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// fakeResolver answers from maps; a missing entry is "not found".
type fakeResolver struct {
	cname map[string]string
	hosts map[string][]string
	addrs map[string][]string
}

var errNotFound = errors.New("not found")

func (r fakeResolver) LookupCNAME(_ context.Context, h string) (string, error) {
	if c, ok := r.cname[h]; ok {
		return c, nil
	}
	return "", errNotFound
}

func (r fakeResolver) LookupHost(_ context.Context, h string) ([]string, error) {
	if a, ok := r.hosts[h]; ok {
		return a, nil
	}
	return nil, errNotFound
}

func (r fakeResolver) LookupAddr(_ context.Context, a string) ([]string, error) {
	if n, ok := r.addrs[a]; ok {
		return n, nil
	}
	return nil, errNotFound
}

// testEnv is an environment with hostname "relay.test.example", no DNS and
// the given environment variables; files are real.
func testEnv(vars map[string]string) env {
	return env{
		getenv:   func(k string) string { return vars[k] },
		readFile: os.ReadFile,
		hostname: func() (string, error) { return "relay.test.example", nil },
		resolver: fakeResolver{},
	}
}

// parseErrs parses src and returns the problems as lines; it fails the test
// if the error is not of type Errors.
func parseErrs(t *testing.T, e env, src string) []string {
	t.Helper()
	c, err := e.parse([]byte(src), "/etc/relayd/relayd.toml")
	if err == nil {
		return nil
	}
	if c != nil {
		t.Errorf("parse returned a config and an error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	return strings.Split(errs.Error(), "\n")
}

func mustParse(t *testing.T, e env, src string) *Config {
	t.Helper()
	c, err := e.parse([]byte(src), "test.toml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

// wantLines checks that got contains each of want exactly, and nothing else.
func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("missing problem:\n  %s", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n  %s", len(got), len(want), strings.Join(got, "\n  "))
	}
}
