package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The sendmail command reads only state_dir and the size limit: a config
// whose smarthost secret is missing or unreadable (as for every user but
// the daemon's) must not stop it.
func TestLoadShimSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secretless := write("a.toml", "state_dir = \"/srv/spool\"\n[upstream]\naddress = \"smtp.example.com:587\"\n"+
		"username = \"u\"\npassword_file = \"/nonexistent/secret\"\n[listen]\nmax_message_bytes = 1234\n")
	s, err := loadShimSettings(secretless)
	if err != nil || s.stateDir != "/srv/spool" || s.maxMessageBytes != 1234 {
		t.Errorf("secretless config: %+v %v", s, err)
	}
	s, err = loadShimSettings(write("b.toml", "state_dir = \"/srv/other\"\n"))
	if err != nil || s.stateDir != "/srv/other" || s.maxMessageBytes != 26214400 {
		t.Errorf("default size limit: %+v %v", s, err)
	}
	s, err = loadShimSettings(write("c.toml", "[listen]\nmax_message_bytes = 0\n"))
	if err != nil || s.stateDir != "/var/lib/relayd" || s.maxMessageBytes != 0 {
		t.Errorf("default state_dir: %+v %v", s, err)
	}
	for name, body := range map[string]string{
		"bad.toml":  "state_dir = [\n",
		"neg.toml":  "state_dir = \"/x\"\n[listen]\nmax_message_bytes = -1\n",
		"empt.toml": "state_dir = \"\"\n[listen]\nmax_message_bytes = 1\n",
	} {
		if s, err := loadShimSettings(write(name, body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, s)
		}
	}
	if _, err := loadShimSettings(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("missing config accepted")
	}
}
