package conf

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestExampleValidates(t *testing.T) {
	c := mustParse(t, testEnv(nil), string(Example))
	if c.Hostname != "relay.example.com" || c.Upstream.Address != "smtp.isp.example:587" ||
		len(c.Users) != 1 || len(c.DKIM) != 1 || c.Rewrite.Admin != "admin@example.com" {
		t.Errorf("example decoded to %+v", c)
	}
}

// The example shows every key: each TOML key of Config (found by encoding a
// fully populated Config) appears in it, commented or not.
func TestExampleShowsEveryKey(t *testing.T) {
	keyRE := regexp.MustCompile(`(?m)^#? ?([a-z_]+) = `)
	shown := map[string]bool{}
	for _, m := range keyRE.FindAllStringSubmatch(string(Example), -1) {
		shown[m[1]] = true
	}
	for _, k := range tomlKeys(t) {
		if !shown[k] {
			t.Errorf("example lacks key %q", k)
		}
	}
}

// The commented-out smarthost account lines are valid once uncommented and
// given a real password file.
func TestExampleSmarthostAccount(t *testing.T) {
	pw := writeFile(t, t.TempDir(), "pw", "secret\n")
	src := string(Example)
	for _, line := range []string{`# username = "relay@example.com"`, `# password_file = "/etc/relayd/smarthost.secret"`} {
		if !strings.Contains(src, line) {
			t.Fatalf("example lacks %q", line)
		}
	}
	src = strings.Replace(src, `# username = `, `username = `, 1)
	src = strings.Replace(src, `# password_file = "/etc/relayd/smarthost.secret"`, fmt.Sprintf("password_file = %q", pw), 1)
	c := mustParse(t, testEnv(nil), src)
	if c.Upstream.Username != "relay@example.com" || c.Upstream.Password != "secret" {
		t.Errorf("upstream = %+v", c.Upstream)
	}
}

// tomlKeys lists the leaf keys of Config's TOML tags.
func tomlKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				walk(f.Type)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem())
			default:
				keys = append(keys, name)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	if len(keys) < 40 {
		t.Fatalf("found only %d keys: %q", len(keys), keys)
	}
	return keys
}
