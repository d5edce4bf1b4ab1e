package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"relayd/dnscheck"
	"relayd/internal/dnstest"
	"relayd/internal/smtptest"
	"relayd/signer"
)

// checkSetup is the material of one test config.
type checkSetup struct {
	dir      string
	upstream string // the [upstream] table body, "" for none
	extra    string // appended verbatim (more tables)
	top      string // top-level keys
	listen   string // listen.smtp value, default ["127.0.0.1:0"]
	listenX  string // more [listen] keys
}

// write writes relayd.toml in s.dir and returns its path.
func (s checkSetup) write(t *testing.T) string {
	t.Helper()
	listen := s.listen
	if listen == "" {
		listen = `["127.0.0.1:0"]`
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname = \"relay.example.com\"\nstate_dir = %q\n%s\n", filepath.Join(s.dir, "spool"), s.top)
	fmt.Fprintf(&b, "[listen]\nsmtp = %s\n%s\n", listen, s.listenX)
	if s.upstream != "" {
		fmt.Fprintf(&b, "[upstream]\n%s\n", s.upstream)
	}
	b.WriteString(s.extra)
	path := filepath.Join(s.dir, "relayd.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// smarthostUpstream is an [upstream] body for sh with user relayuser.
func smarthostUpstream(t *testing.T, dir, addr, caFile, extra string) string {
	t.Helper()
	pw := filepath.Join(dir, "smarthost.secret")
	if err := os.WriteFile(pw, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(extra, "timeout =") {
		extra += "\ntimeout = \"5s\"\n"
	}
	return fmt.Sprintf("address = %q\nca_file = %q\nusername = \"relayuser\"\npassword_file = %q\n%s\n",
		addr, caFile, pw, extra)
}

// check runs `relayd check ARGS...` in-process.
func check(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"relayd", "check"}, args...), strings.NewReader(""), &out, &errb)
	if errb.Len() > 0 {
		t.Logf("stderr: %s", errb.String())
	}
	return out.String(), code
}

// lines returns the output lines that start with level (e.g. "FAIL ").
func lines(out, level string) []string {
	var ls []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, level+" ") {
			ls = append(ls, l)
		}
	}
	return ls
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentPort is a listener that accepts connections and never says a word.
func silentPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn // held open, silent, until the test ends
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestCheckSmarthostProbe(t *testing.T) {
	users := map[string]string{"relayuser": "s3cret pass"}
	tests := []struct {
		name string
		opts smtptest.Options
		// addr/caFile override the server's when set.
		addr   func(t *testing.T) string
		caFile func(t *testing.T) string
		extra  string // more [upstream] keys
		want   string // in the smarthost FAIL line; "" means the probe passes
		fix    string // in its Fix
	}{
		{name: "good", opts: smtptest.Options{RequireTLS: true, Users: users}},
		{name: "no STARTTLS", opts: smtptest.Options{NoSTARTTLS: true, Users: users},
			want: `server offers no STARTTLS (set tls = "implicit" with port 465?).`, fix: `upstream.tls = "implicit"`},
		{name: "wrong certificate name", opts: smtptest.Options{RequireTLS: true, Users: users, Faults: smtptest.Faults{TLSFail: true}},
			want: "certificate is for wrong.invalid, not 127.0.0.1", fix: `set upstream.address to a name the certificate lists (e.g. "wrong.invalid:`},
		{name: "unknown CA", opts: smtptest.Options{RequireTLS: true, Users: users},
			caFile: func(t *testing.T) string { return smtptest.NewCA(t).WritePEM(t) },
			want:   "certificate signed by an unknown authority (issuer CN=smtptest CA", fix: "upstream.ca_file"},
		{name: "bad password", opts: smtptest.Options{RequireTLS: true, Users: users, Faults: smtptest.Faults{AuthFail: true}},
			want: `535 authentication failed for "relayuser" (check username/password_file).`, fix: "smarthost.secret"},
		{name: "implicit TLS server, starttls configured", opts: smtptest.Options{Implicit: true, Users: users},
			extra: "tls = \"starttls\"\ntimeout = \"1s\"",
			want:  "no SMTP greeting on port ", fix: `set upstream.tls = "implicit"`},
		{name: "STARTTLS server, implicit configured", opts: smtptest.Options{RequireTLS: true, Users: users},
			extra: "tls = \"implicit\"",
			want:  "the server does not speak TLS on port ", fix: `set upstream.tls = "starttls"`},
		{name: "silent server", opts: smtptest.Options{}, addr: silentPort, extra: "timeout = \"1s\"",
			want: "accepted the connection on port ", fix: "overloaded"},
		{name: "refused port", opts: smtptest.Options{}, addr: closedPort,
			want: "connection refused on port ", fix: "check upstream.address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sh := smtptest.New(t, tc.opts)
			addr, ca := sh.Addr(), sh.CA().WritePEM(t)
			if tc.addr != nil {
				addr = tc.addr(t)
			}
			if tc.caFile != nil {
				ca = tc.caFile(t)
			}
			dir := t.TempDir()
			cfg := checkSetup{dir: dir, upstream: smarthostUpstream(t, dir, addr, ca, tc.extra)}.write(t)
			out, code := check(t, "--config", cfg, "--no-dns")
			fails := lines(out, "FAIL")
			if len(sh.Messages()) != 0 {
				t.Errorf("the probe sent mail: %v", sh.Messages())
			}
			if tc.want == "" {
				if code != 0 || len(fails) != 0 || !strings.Contains(out, "OK smarthost "+addr+": STARTTLS, certificate verified, AUTH accepted for relayuser") {
					t.Fatalf("exit %d, want 0 and an OK smarthost line:\n%s", code, out)
				}
				if sh.Logins() != 1 {
					t.Errorf("%d logins, want 1", sh.Logins())
				}
				return
			}
			if code != 1 || len(fails) != 1 {
				t.Fatalf("exit %d with %d FAIL lines, want 1 and exactly the smarthost FAIL:\n%s", code, len(fails), out)
			}
			f := fails[0]
			t.Log(f)
			finding, fix, _ := strings.Cut(f, " Fix: ")
			if !strings.HasPrefix(f, "FAIL smarthost "+addr+": ") || !strings.Contains(finding, tc.want) || !strings.Contains(fix, tc.fix) {
				t.Fatalf("got %q\nwant finding with %q and fix with %q", f, tc.want, tc.fix)
			}
			if strings.Contains(finding, "?.") {
				t.Errorf("finding ends in %q", "?.")
			}
			if tc.name == "no STARTTLS" && sh.AuthAttempts() != 0 {
				t.Errorf("credentials were sent without TLS (%d AUTH attempts)", sh.AuthAttempts())
			}
		})
	}
}

// fakeGreeter is a minimal plain-text smarthost on loopback whose greeting
// carries a date, as Exim's and Sendmail's do; it answers EHLO and QUIT.
func fakeGreeter(t *testing.T, date time.Time) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "220 fake.test ESMTP Exim 4.96 %s\r\n", date.Format(time.RFC1123Z))
				sc := bufio.NewScanner(c)
				for i := 0; i < 10 && sc.Scan(); i++ {
					switch cmd := strings.ToUpper(strings.Fields(sc.Text() + " x")[0]); cmd {
					case "EHLO":
						fmt.Fprint(c, "250-fake.test\r\n250 8BITMIME\r\n")
					case "QUIT":
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "502 5.5.1 no\r\n")
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestCheckClockFromGreeting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset time.Duration
		want   string
	}{
		{"in sync", 0, `OK clock: local clock is within [01]s of the remote clock`},
		{"local clock behind", 10 * time.Minute, `WARN clock: local clock is (9m59s|10m0s) behind the remote clock`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeGreeter(t, time.Now().Add(tc.offset))
			dir := t.TempDir()
			// ca_file is unused with tls = "none"; it is set because serve.go's
			// newUpstream currently requires one.
			cfg := checkSetup{dir: dir, upstream: fmt.Sprintf("address = %q\ntls = \"none\"\ntimeout = \"5s\"\nca_file = %q\n",
				addr, smtptest.NewCA(t).WritePEM(t))}.write(t)
			out, code := check(t, "--config", cfg, "--no-dns")
			if code != 0 || !strings.Contains(out, "OK smarthost "+addr) {
				t.Fatalf("exit %d, want 0 with the probe OK:\n%s", code, out)
			}
			if !regexp.MustCompile(tc.want).MatchString(out) {
				t.Fatalf("want %q in:\n%s", tc.want, out)
			}
			if strings.Contains(tc.want, "WARN") && !strings.Contains(out, "timedatectl set-ntp true") {
				t.Errorf("clock warning without the NTP fix:\n%s", out)
			}
		})
	}
}

func TestGreetingDate(t *testing.T) {
	want := time.Date(2026, 1, 6, 10, 0, 0, 0, time.UTC)
	for _, g := range []string{
		"mx.isp.net ESMTP Exim 4.96 Tue, 06 Jan 2026 10:00:00 +0000",
		"mx.isp.net ESMTP Sendmail 8.17.1/8.17.1; Tue, 6 Jan 2026 11:00:00 +0100",
		"mx.isp.net Microsoft ESMTP MAIL Service ready at Tue, 6 Jan 2026 05:00:00 -0500",
		"mx.isp.net ESMTP ready\nTue, 06 Jan 2026 10:00:00 +0000 (UTC)",
	} {
		got, ok := greetingDate(g)
		if !ok || !got.Equal(want) {
			t.Errorf("greetingDate(%q) = %v, %v; want %v", g, got, ok, want)
		}
	}
	for _, g := range []string{"smtptest.invalid ESMTP Service Ready", "mx ESMTP 2026 10:00:00", ""} {
		if got, ok := greetingDate(g); ok {
			t.Errorf("greetingDate(%q) = %v, want no date", g, got)
		}
	}
}

// dkimSetup writes an Ed25519 key for s1._domainkey.example.com and returns
// the [[dkim]] table and the key record's TXT value.
func dkimSetup(t *testing.T, dir string) (table, txt, keyFile string) {
	t.Helper()
	pemBytes, txt, err := signer.GenerateKey(signer.AlgEd25519, 0)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "example.com.s1.pem")
	if err := signer.WriteKeyFile(keyFile, pemBytes); err != nil {
		t.Fatal(err)
	}
	table = fmt.Sprintf("[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey_file = %q\n", keyFile)
	return table, txt, keyFile
}

// goodZone is DNS for a correctly set up relay.example.com sending as
// example.com through smtp.isp.test.
func goodZone(dkimTXT string) dnstest.Zone {
	return dnstest.Zone{
		"relay.example.com":         {"relay.example.com. 300 IN A 192.0.2.25"},
		"smtp.isp.test":             {"smtp.isp.test. 300 IN A 198.51.100.7"},
		"isp.test":                  {`isp.test. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`},
		"mx1.example.com":           {"mx1.example.com. 300 IN A 192.0.2.30"},
		"_dmarc.example.com":        {`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"`},
		"s1._domainkey.example.com": {`s1._domainkey.example.com. 300 IN TXT "` + dkimTXT + `"`},
		"example.com": {
			"example.com. 300 IN MX 10 mx1.example.com.",
			`example.com. 300 IN TXT "v=spf1 mx include:isp.test -all"`,
		},
	}
}

func dnsConfig(t *testing.T) (cfg, txt string) {
	t.Helper()
	dir := t.TempDir()
	table, txt, _ := dkimSetup(t, dir)
	cfg = checkSetup{dir: dir,
		upstream: smarthostUpstream(t, dir, "smtp.isp.test:587", smtptest.NewCA(t).WritePEM(t), ""),
		extra:    table + "[rewrite]\nsender = \"noreply@example.com\"\n",
	}.write(t)
	return cfg, txt
}

func TestCheckDNSGoodZone(t *testing.T) {
	cfg, txt := dnsConfig(t)
	ts := dnstest.Start(t, goodZone(txt))
	out, code := check(t, "--config", cfg, "--no-smarthost", "--resolver", ts.Addr)
	if code != 0 || len(lines(out, "FAIL")) != 0 || len(lines(out, "WARN")) != 0 {
		t.Fatalf("exit %d, want 0 with no FAIL and no WARN:\n%s", code, out)
	}
	for _, want := range []string{"OK HELO relay.example.com", "OK DKIM s1._domainkey.example.com", "OK SPF example.com", "OK DMARC example.com", "OK MX example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q line: the DNS checks were not wired with the config's names:\n%s", want, out)
		}
	}
}

func TestCheckDNSMisconfigured(t *testing.T) {
	cfg, txt := dnsConfig(t)
	z := goodZone(txt).Clone()
	// A republished key (another key's p=) and no DMARC record.
	_, other, err := signer.GenerateKey(signer.AlgEd25519, 0)
	if err != nil {
		t.Fatal(err)
	}
	z["s1._domainkey.example.com"] = []string{`s1._domainkey.example.com. 300 IN TXT "` + other + `"`}
	delete(z, "_dmarc.example.com")
	ts := dnstest.Start(t, z)
	out, code := check(t, "--config", cfg, "--no-smarthost", "--resolver", ts.Addr)
	fails := lines(out, "FAIL")
	if code != 1 || len(fails) != 2 || len(lines(out, "WARN")) != 0 {
		t.Fatalf("exit %d, want 1 with exactly two FAIL lines (DKIM, DMARC):\n%s", code, out)
	}
	_, p, _ := strings.Cut(txt, "p=")
	if !strings.HasPrefix(fails[0], "FAIL DKIM s1._domainkey.example.com: published key does not match the private key") ||
		!strings.Contains(fails[0], "Fix: replace it with s1._domainkey.example.com. IN TXT") || !strings.Contains(fails[0], p) {
		t.Errorf("DKIM finding %q lacks the diagnosis or the record to publish (p=%s)", fails[0], p)
	}
	if !strings.HasPrefix(fails[1], "FAIL DMARC example.com: ") || !strings.Contains(fails[1], `Fix: publish _dmarc.example.com. IN TXT "v=DMARC1; p=quarantine`) {
		t.Errorf("DMARC finding %q lacks the record to publish", fails[1])
	}
}

func TestCheckDeadResolver(t *testing.T) {
	cfg, _ := dnsConfig(t)
	out, code := check(t, "--config", cfg, "--no-smarthost", "--resolver", closedPort(t))
	fails := lines(out, "FAIL")
	if code != 1 || len(fails) != 1 || !strings.HasPrefix(fails[0], "FAIL resolver: ") {
		t.Fatalf("exit %d, want 1 with one resolver FAIL:\n%s", code, out)
	}
}

func TestCheckJSON(t *testing.T) {
	cfg, txt := dnsConfig(t)
	z := goodZone(txt).Clone()
	delete(z, "_dmarc.example.com")
	ts := dnstest.Start(t, z)
	out, code := check(t, "--config", cfg, "--no-smarthost", "--resolver", ts.Addr, "--json")
	var fs []map[string]any
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	if code != 1 || len(fs) < 5 {
		t.Fatalf("exit %d with %d findings, want 1 and the whole report:\n%s", code, len(fs), out)
	}
	var failed []string
	for _, f := range fs {
		if f["level"] == "" || f["what"] == "" || f["finding"] == "" {
			t.Errorf("incomplete finding %v", f)
		}
		if f["level"] == "FAIL" {
			failed = append(failed, fmt.Sprint(f["what"]))
			if fix, _ := f["fix"].(string); !strings.Contains(fix, "_dmarc.example.com. IN TXT") {
				t.Errorf("FAIL without its fix: %v", f)
			}
		}
	}
	if len(failed) != 1 || failed[0] != "DMARC example.com" {
		t.Errorf("FAIL findings %v, want [DMARC example.com]", failed)
	}
}

func TestCheckBadConfigListsEveryError(t *testing.T) {
	dir := t.TempDir()
	cfg := checkSetup{dir: dir, listen: `["nope"]`, top: "colour = \"blue\"",
		upstream: "address = \"smtp.isp.test:587\"\ntls = \"bogus\"\n",
		extra:    "[queue]\nconcurrency = 0\nmax_age = \"-1h\"\n"}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	fails := lines(out, "FAIL")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, key := range []string{"colour", "listen.smtp[0]", "upstream.tls", "queue.concurrency", "queue.max_age"} {
		found := false
		for _, f := range fails {
			found = found || strings.HasPrefix(f, "FAIL config "+key+": ") && strings.Contains(f, "Fix: correct "+key+" in "+cfg)
		}
		if !found {
			t.Errorf("no FAIL for %s:\n%s", key, out)
		}
	}
	if len(fails) != 5 || len(lines(out, "OK")) != 0 {
		t.Errorf("want exactly the 5 problems and nothing else:\n%s", out)
	}
}

func TestCheckBuildErrorsListedTogether(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	cfg := checkSetup{dir: dir,
		upstream: fmt.Sprintf("address = \"smtp.isp.test:587\"\nca_file = %q\n", missing+".ca"),
		extra:    fmt.Sprintf("[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey_file = %q\n", missing+".pem"),
		listenX:  fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", missing+".crt", missing+".key"),
	}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	fails := lines(out, "FAIL")
	if code != 1 || len(fails) != 3 {
		t.Fatalf("exit %d with %d FAIL lines, want 1 with the key, certificate and CA problems:\n%s", code, len(fails), out)
	}
	for i, want := range []string{"dkim[0].key_file", "listen.tls_cert", "upstream.ca_file"} {
		if !strings.Contains(fails[i], want) {
			t.Errorf("FAIL %d is %q, want it about %s", i, fails[i], want)
		}
	}
	// The rest of the config is still checked.
	if !strings.Contains(out, "OK listen.smtp 127.0.0.1:0: can be bound") {
		t.Errorf("the checks stopped at the first problem:\n%s", out)
	}
}

func TestCheckSecretFileModes(t *testing.T) {
	dir := t.TempDir()
	table, _, keyFile := dkimSetup(t, dir)
	up := smarthostUpstream(t, dir, "smtp.isp.test:587", smtptest.NewCA(t).WritePEM(t), "")
	cfg := checkSetup{dir: dir, upstream: up, extra: table}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	if code != 0 || !strings.Contains(out, "OK dkim[0].key_file "+keyFile+": mode 0600") {
		t.Fatalf("exit %d with a 0600 key, want 0:\n%s", code, out)
	}

	pw := filepath.Join(dir, "smarthost.secret")
	for _, f := range []string{keyFile, pw} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, code = check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	fails := lines(out, "FAIL")
	want := []string{
		"FAIL dkim[0].key_file " + keyFile + ": mode 0644 lets group or others read a secret. Fix: chmod 600 " + keyFile,
		"FAIL upstream.password_file " + pw + ": mode 0644 lets group or others read a secret. Fix: chmod 600 " + pw,
	}
	if code != 1 || strings.Join(fails, "\n") != strings.Join(want, "\n") {
		t.Fatalf("exit %d, FAIL lines:\n%s\nwant exactly:\n%s\nfull output:\n%s", code, strings.Join(fails, "\n"), strings.Join(want, "\n"), out)
	}
}

func TestCheckListenerInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	cfg := checkSetup{dir: dir, listen: fmt.Sprintf("[%q]", l.Addr().String())}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	want := "WARN listen.smtp " + l.Addr().String() + ": in use (is relayd already running?)."
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want 0 and %q:\n%s", code, want, out)
	}
}

func TestCheckStateDirFreeSpace(t *testing.T) {
	dir := t.TempDir()
	cfg := checkSetup{dir: dir, extra: "[queue]\nmin_free_bytes = 4611686018427387904\n"}.write(t)
	out, code := check(t, "--config", cfg, "--no-dns", "--no-smarthost")
	fails := lines(out, "FAIL")
	if code != 1 || len(fails) != 1 || !strings.HasPrefix(fails[0], "FAIL state_dir "+filepath.Join(dir, "spool")+": ") ||
		!strings.Contains(fails[0], "less than queue.min_free_bytes") {
		t.Fatalf("exit %d, want one state_dir FAIL:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool")); err == nil {
		t.Errorf("relayd check created the state directory")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("relayd check left files behind in %s: %v", dir, entries)
	}
}

// Outside the service the systemd credential does not exist: check reads
// the smarthost password from the credential's source file instead of
// failing on a config that is right for the service.
func TestCheckReadsCredentialSource(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relayd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("hostname = \"relay.example.com\"\nstate_dir = %q\n[listen]\nsmtp = [\"127.0.0.1:0\"]\n[upstream]\naddress = \"127.0.0.1:2525\"\nusername = \"relayuser\"\n",
		filepath.Join(dir, "spool"))), 0o644)
	secret := filepath.Join(dir, "smarthost.secret")
	c := &checker{path: cfg, noDNS: true, noSmarthost: true, now: time.Now, euid: os.Geteuid(), credentialSource: secret}
	findings := c.run(context.Background())
	if !dnscheck.Failed(findings) {
		t.Fatalf("no password anywhere must FAIL: %v", findings)
	}
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	c = &checker{path: cfg, noDNS: true, noSmarthost: true, now: time.Now, euid: os.Geteuid(), credentialSource: secret}
	findings = c.run(context.Background())
	var sawOK bool
	for _, f := range findings {
		if f.Level == dnscheck.Fail {
			t.Errorf("FAIL with the credential source present: %v", f)
		}
		if f.What == "smarthost password" && f.Level == dnscheck.OK {
			sawOK = true
		}
	}
	if !sawOK {
		t.Errorf("no finding says where the password came from: %v", findings)
	}
}
