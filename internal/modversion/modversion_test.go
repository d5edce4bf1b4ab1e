package modversion

import "testing"

func TestFromGoMod(t *testing.T) {
	const m = "github.com/emersion/go-smtp"
	for _, c := range []struct{ gomod, want string }{
		{"module x\nrequire (\n\t" + m + " v0.26.0\n)\n", "v0.26.0"},
		{"module x\nrequire " + m + " v0.25.1\n", "v0.25.1"},
		{"require " + m + " v0.26.0\nreplace " + m + " => github.com/fork/go-smtp v0.26.1\n", "v0.26.1"},
		{"require " + m + " v0.26.0\nreplace " + m + " v0.26.0 => ../go-smtp\n", "../go-smtp"},
	} {
		if got, err := fromGoMod(c.gomod, m); err != nil || got != c.want {
			t.Errorf("%q: %q %v, want %q", c.gomod, got, err, c.want)
		}
	}
	if _, err := fromGoMod("module x\n", m); err == nil {
		t.Error("a go.mod without the module: no error")
	}
}
