package conf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"relayd/internal/tlsmode"
)

func TestCleartextOnlyToLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:25", "[::1]:25", "localhost:2525", "LOCALHOST:2525", "127.0.0.53:25", "[::ffff:127.0.0.1]:25"} {
		c := mustParse(t, testEnv(nil), fmt.Sprintf("[upstream]\naddress = %q\ntls = \"none\"\n", addr))
		if c.Upstream.TLS != tlsmode.None || c.Upstream.Address != addr {
			t.Errorf("%s: %+v", addr, c.Upstream)
		}
	}
	for _, addr := range []string{"smtp.isp.example:25", "192.0.2.1:25", "[2001:db8::1]:25", "localhost.evil.example:25"} {
		got := parseErrs(t, testEnv(nil), fmt.Sprintf("[upstream]\naddress = %q\ntls = \"none\"\n", addr))
		if len(got) != 1 || !strings.Contains(got[0], `/etc/relayd/relayd.toml: upstream.tls: "none": refusing to send credentials and mail in clear to a non-loopback smarthost`) {
			t.Errorf("%s: got %q", addr, got)
		}
	}
	got := parseErrs(t, testEnv(nil), "[upstream]\naddress = \"127.0.0.1:25\"\ntls = \"none\"\nfallback = [\"127.0.0.2:25\", \"smtp.isp.example:25\"]\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "/etc/relayd/relayd.toml: upstream.fallback[1]: ") {
		t.Errorf("fallback in clear: got %q", got)
	}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "s3cret pass\n")
	src := fmt.Sprintf("[upstream]\naddress = \"smtp.isp.example:587\"\nusername = \"me@example.com\"\npassword_file = %q\n", pw)
	// password_file wins over the systemd credential.
	creds := t.TempDir()
	writeFile(t, creds, "smarthost", "from-credential")
	c := mustParse(t, testEnv(map[string]string{"CREDENTIALS_DIRECTORY": creds}), src)
	if c.Upstream.Password != "s3cret pass" {
		t.Errorf("Password = %q, want %q", c.Upstream.Password, "s3cret pass")
	}
	// Only one trailing newline is removed.
	writeFile(t, dir, "pw", "two\n\n")
	if c := mustParse(t, testEnv(nil), src); c.Upstream.Password != "two\n" {
		t.Errorf("Password = %q, want %q", c.Upstream.Password, "two\n")
	}
	writeFile(t, dir, "pw", "\r\n")
	got := parseErrs(t, testEnv(nil), src)
	if len(got) != 1 || !strings.Contains(got[0], "upstream.password_file: cannot read the smarthost password: "+pw+" is empty") {
		t.Errorf("empty password file: %q", got)
	}
	os.Remove(pw)
	got = parseErrs(t, testEnv(nil), src)
	if len(got) != 1 || !strings.Contains(got[0], "upstream.password_file: cannot read the smarthost password: open "+pw) {
		t.Errorf("missing password file: %q", got)
	}
	got = parseErrs(t, testEnv(nil), fmt.Sprintf("[upstream]\npassword_file = %q\n", pw))
	wantLines(t, got, "/etc/relayd/relayd.toml: upstream.password_file: is set but upstream.username is empty")
}

func TestCredentialsDirectory(t *testing.T) {
	src := "[upstream]\naddress = \"smtp.isp.example:587\"\nusername = \"me@example.com\"\n"
	creds := t.TempDir()
	e := testEnv(map[string]string{"CREDENTIALS_DIRECTORY": creds})
	got := parseErrs(t, e, src)
	wantLines(t, got, `/etc/relayd/relayd.toml: upstream.username: is set but there is no password: set upstream.password_file, or pass the systemd credential "smarthost" (LoadCredential=smarthost:/path)`)
	if got := parseErrs(t, testEnv(nil), src); len(got) != 1 {
		t.Errorf("no CREDENTIALS_DIRECTORY: %q", got)
	}
	writeFile(t, creds, "smarthost", "from-systemd\n")
	if c := mustParse(t, e, src); c.Upstream.Password != "from-systemd" {
		t.Errorf("Password = %q, want from-systemd", c.Upstream.Password)
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	creds := t.TempDir()
	writeFile(t, creds, "smarthost", "hunter2-secret")
	c := mustParse(t, testEnv(map[string]string{"CREDENTIALS_DIRECTORY": creds}),
		"[upstream]\naddress = \"smtp.isp.example:587\"\nusername = \"me@example.com\"\n")
	if c.Upstream.Password != "hunter2-secret" {
		t.Fatalf("Password = %q", c.Upstream.Password)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %v %+v %#v\n", c.Upstream, c.Upstream, c.Upstream, c.Upstream, *c, c, *c)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	if err := toml.NewEncoder(&out).Encode(c); err != nil {
		t.Fatal(err)
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "upstream", c.Upstream, "cfg", c)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "upstream", c.Upstream, "cfg", c)
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("password printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "me@example.com") || !strings.Contains(out.String(), redacted) {
		t.Errorf("output lacks the username or the redaction mark:\n%s", out.String())
	}
}
