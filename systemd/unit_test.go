package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"relayd/conf"
)

// maxExposure is the highest `systemd-analyze security` exposure accepted
// (issue 9). The scale runs from 0.0 (fully sandboxed) to 10.0.
const maxExposure = 2.0

// needTool returns the path of a tool, skipping the test when it is missing
// outside CI; in CI (CI=true) a missing tool is a failure, so the check can
// never be skipped silently there.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found and CI=true: install the Debian package that has it (systemd)", name)
	}
	t.Skipf("%s not found: %v", name, err)
	return ""
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)`)

// parseExposure extracts the overall exposure from systemd-analyze output.
func parseExposure(out string) (float64, bool) {
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func TestParseExposure(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"→ Overall exposure level for relayd.service: 1.6 OK 🙂", 1.6, true},
		{"→ Overall exposure level for x.service: 9.6 UNSAFE 😨\n", 9.6, true},
		{"→ Overall exposure level for x.service: 10 UNSAFE", 10, true},
		{"Failed to load unit", 0, false},
	} {
		got, ok := parseExposure(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseExposure(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestExposure runs the real systemd-analyze on the unit file.
func TestExposure(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	cmd := exec.Command(analyze, "security", "--offline=true", "--no-pager", "relayd.service")
	out, err := cmd.CombinedOutput()
	// systemd-analyze exits non-zero when the exposure exceeds --threshold
	// (default 100 = 10.0), i.e. only on real errors: report those.
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, ok := parseExposure(string(out))
	if !ok {
		t.Fatalf("no exposure level in systemd-analyze output:\n%s", out)
	}
	t.Logf("exposure %.1f (limit %.1f)", score, maxExposure)
	if score > maxExposure {
		t.Errorf("relayd.service exposure %.1f > %.1f; findings:\n%s", score, maxExposure, out)
	}
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the effective value of a single-valued key ("" if unset).
func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestUnitContract checks the directives issue 9 and the daemon rely on, so
// that a later edit cannot drop one while keeping the score low.
func TestUnitContract(t *testing.T) {
	u := parseUnit(t, "relayd.service")
	want := map[string]string{
		"Type":                    "notify",
		"User":                    "relayd",
		"Group":                   "relayd",
		"ExecStart":               "/usr/sbin/relayd serve --config /etc/relayd/relayd.toml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"StateDirectory":          "relayd",
		"StateDirectoryMode":      "0711",
		"RuntimeDirectory":        "relayd",
		"LoadCredential":          "smarthost:/etc/relayd/smarthost.secret",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"NoNewPrivileges":         "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"MemoryDenyWriteExecute":  "yes",
		"LockPersonality":         "yes",
		"UMask":                   "0077",
		"SystemCallArchitectures": "native",
	}
	for k, v := range want {
		if got := u.last("Service", k); got != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	if got := u["Service"]["SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q, want @system-service first", got)
	}
	// A capability inside a private user namespace does not count for
	// binding port 25 in the host's network namespace.
	if v := u.last("Service", "PrivateUsers"); v != "" && v != "no" && v != "false" {
		t.Errorf("PrivateUsers=%s would break CAP_NET_BIND_SERVICE", v)
	}
	if u.last("Service", "PrivateNetwork") == "yes" {
		t.Error("PrivateNetwork=yes: relayd must reach the smarthost")
	}
	if got := u.last("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", got)
	}
}

// tmpfilesLine is one "d" line of a tmpfiles.d snippet.
type tmpfilesLine struct{ mode, user, group string }

func parseTmpfiles(t *testing.T, path string) map[string]tmpfilesLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]tmpfilesLine{}
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 5 || f[0] != "d" {
			t.Fatalf("%s:%d: expected a d line with mode, user, group: %q", path, n+1, line)
		}
		m[f[1]] = tmpfilesLine{f[2], f[3], f[4]}
	}
	return m
}

// TestLayoutAgrees checks that the unit, the tmpfiles snippet and the
// packaged config name the same spool, and that the modes are the ones the
// sendmail command needs.
func TestLayoutAgrees(t *testing.T) {
	u := parseUnit(t, "relayd.service")
	stateDir := "/var/lib/" + u.last("Service", "StateDirectory")

	data, err := os.ReadFile(filepath.Join("..", "packaging", "relayd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAYD_CONFIG", "")
	cfg, err := conf.Parse(data, "packaging/relayd.toml")
	if err != nil {
		t.Fatalf("packaged config does not load: %v", err)
	}
	if cfg.StateDir != stateDir {
		t.Errorf("packaged state_dir %q != unit StateDirectory %q", cfg.StateDir, stateDir)
	}
	if cfg.Upstream.Address != "" {
		t.Errorf("packaged config sets a smarthost %q; it must hold mail until the admin sets one", cfg.Upstream.Address)
	}

	tf := parseTmpfiles(t, "relayd.tmpfiles")
	want := map[string]string{
		stateDir:               u.last("Service", "StateDirectoryMode"),
		stateDir + "/maildrop": "1733",
		stateDir + "/public":   "0755",
	}
	for p, mode := range want {
		got, ok := tf[p]
		if !ok {
			t.Errorf("relayd.tmpfiles lacks %s", p)
			continue
		}
		if got.mode != mode || got.user != "relayd" || got.group != "relayd" {
			t.Errorf("relayd.tmpfiles %s = %+v, want mode %s relayd:relayd", p, got, mode)
		}
	}
}

// TestSysusersAndTmpfilesApply runs the real systemd-sysusers and
// systemd-tmpfiles against an empty root and checks what they create.
func TestSysusersAndTmpfilesApply(t *testing.T) {
	sysusers := needTool(t, "systemd-sysusers")
	tmpfiles := needTool(t, "systemd-tmpfiles")
	if os.Geteuid() != 0 {
		t.Skip("systemd-tmpfiles needs root to chown in the test root")
	}
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(file, bin string, args ...string) {
		in, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		cmd := exec.Command(bin, append(append([]string{"--root=" + root}, args...), "-")...)
		cmd.Stdin = in
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", bin, err, out)
		}
	}
	run("relayd.sysusers", sysusers)
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid int = -1, -1
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[0] == "relayd" {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			if f[6] != "/usr/sbin/nologin" {
				t.Errorf("relayd shell %q, want /usr/sbin/nologin", f[6])
			}
		}
	}
	if uid <= 0 || uid >= 1000 || gid <= 0 {
		t.Fatalf("no system user relayd in %s:\n%s", "passwd", passwd)
	}

	run("relayd.tmpfiles", tmpfiles, "--create")
	for dir, mode := range map[string]os.FileMode{
		"var/lib/relayd":          0o711,
		"var/lib/relayd/maildrop": 0o1733,
		"var/lib/relayd/public":   0o755,
	} {
		st, err := os.Stat(filepath.Join(root, dir))
		if err != nil {
			t.Errorf("not created: %v", err)
			continue
		}
		got := st.Mode() & (os.ModePerm | os.ModeSticky)
		wantMode := mode & os.ModePerm
		if mode&0o1000 != 0 {
			wantMode |= os.ModeSticky
		}
		if got != wantMode || !st.IsDir() {
			t.Errorf("/%s mode %v, want %v", dir, st.Mode(), wantMode)
		}
		if uid2, ok := ownerUID(st); ok && uid2 != uid {
			t.Errorf("/%s owned by uid %d, want relayd (%d)", dir, uid2, uid)
		}
	}
}

// TestVerify runs `systemd-analyze verify`, which reports unknown or
// misspelled directives (security does not). ExecStart's binary must exist
// for verify, so a copy points it at /bin/true.
func TestVerify(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	data, err := os.ReadFile("relayd.service")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true to stand in for /usr/sbin/relayd")
	}
	copyPath := filepath.Join(t.TempDir(), "relayd.service")
	fixed := strings.ReplaceAll(string(data), "/usr/sbin/relayd", "/bin/true")
	if err := os.WriteFile(copyPath, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
