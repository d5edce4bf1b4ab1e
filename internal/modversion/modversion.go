// Package modversion tells which version of a module a build uses, so that
// tests pinning assumptions about a library's internals (smtpd/readpath,
// upstream/wire) fail loudly when it changes.
package modversion

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
)

// Of returns the version of module in this build: from the build info's
// Deps, or, where a binary lists none (test binaries here), from the
// go.mod at goMod. A replace directive for module wins (a local
// replacement shows as its path).
func Of(module, goMod string) (string, error) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == module {
				if d.Replace != nil {
					return d.Replace.Version, nil
				}
				return d.Version, nil
			}
		}
	}
	b, err := os.ReadFile(goMod)
	if err != nil {
		return "", fmt.Errorf("no build info for %s and no go.mod: %w", module, err)
	}
	return fromGoMod(string(b), module)
}

func fromGoMod(gomod, module string) (string, error) {
	v := ""
	for _, line := range strings.Split(gomod, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "require" || f[0] == "replace") {
			f = f[1:]
		}
		switch {
		case len(f) < 2 || f[0] != module:
		case strings.Contains(line, "=>"):
			v = f[len(f)-1]
		case v == "":
			v = f[1]
		}
	}
	if v == "" {
		return "", fmt.Errorf("%s is in neither the build info nor go.mod", module)
	}
	return v, nil
}
