package main

// relayd check: what an experienced mail admin would look at before the
// first message leaves. Three sections, in this order:
//
//   - config: every problem conf.Load and build() find (as the daemon would
//     report them), key and password file modes, the state directory, and
//     whether each listener can be bound;
//   - smarthost: upstream.Client.Probe (connect, EHLO, STARTTLS,
//     certificate, AUTH; no mail is sent), each failure mapped to a precise
//     diagnosis, then the clock compared with a date in the greeting;
//   - DNS: dnscheck.Checker for the hostname, the DKIM keys and domains and
//     the rewrite.sender domain.
//
// Every line is a dnscheck.Finding; the exit code is 1 if any is FAIL.
// Nothing here changes state except a temporary file created and removed in
// state_dir, and listeners opened and closed at once.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"relayd/conf"
	"relayd/dnscheck"
	"relayd/internal/reply"
	"relayd/internal/sysexits"
	"relayd/internal/tlsmode"
	"relayd/signer"
	"relayd/upstream"
)

// Bounds of the network parts of a check, so that it always ends.
const (
	checkProbeTimeout = 45 * time.Second // the whole smarthost probe, fallbacks included
	checkDNSTimeout   = 60 * time.Second // the whole DNS section
	checkStepTimeout  = 15 * time.Second // one connection step or DNS query
)

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("check", stderr)
	cfgFlag := fs.String("config", "", "config `FILE` (default $RELAYD_CONFIG or "+defaultConfigPath+")")
	resolver := fs.String("resolver", "", "DNS resolver `HOST:PORT` (default: first nameserver in /etc/resolv.conf)")
	noDNS := fs.Bool("no-dns", false, "skip the DNS checks")
	noSmarthost := fs.Bool("no-smarthost", false, "skip the smarthost probe")
	asJSON := fs.Bool("json", false, "print the findings as a JSON array")
	if err := fs.Parse(args); err != nil {
		return sysexits.Usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relayd check: unexpected argument %q\n", fs.Arg(0))
		return sysexits.Usage
	}
	c := &checker{
		path:        configPath(*cfgFlag),
		resolver:    *resolver,
		noDNS:       *noDNS,
		noSmarthost: *noSmarthost,
		now:         time.Now,
		euid:        os.Geteuid(),

		credentialSource:  credentialSource,
		oauthSecretSource: oauthSecretSource,
	}
	findings := c.run(context.Background())
	if *asJSON {
		if err := dnscheck.FormatJSON(stdout, findings); err != nil {
			fmt.Fprintf(stderr, "relayd check: %v\n", err)
			return exitFailure
		}
	} else {
		dnscheck.Format(stdout, findings)
	}
	if dnscheck.Failed(findings) {
		return exitFailure
	}
	return sysexits.OK
}

// checker is one run of `relayd check`.
type checker struct {
	path        string
	resolver    string
	noDNS       bool
	noSmarthost bool
	now         func() time.Time
	euid        int
	// credentialSource is read when the config's only problem is the
	// smarthost password missing outside the service.
	credentialSource string
	// oauthSecretSource is the same for the credential "oauth2".
	oauthSecretSource string

	out []dnscheck.Finding
}

func (c *checker) ok(what, format string, a ...any) {
	c.out = append(c.out, dnscheck.Finding{Level: dnscheck.OK, What: what, Finding: fmt.Sprintf(format, a...)})
}

func (c *checker) warn(what, fix, format string, a ...any) {
	c.out = append(c.out, dnscheck.Finding{Level: dnscheck.Warn, What: what, Finding: fmt.Sprintf(format, a...), Fix: fix})
}

func (c *checker) fail(what, fix, format string, a ...any) {
	c.out = append(c.out, dnscheck.Finding{Level: dnscheck.Fail, What: what, Finding: fmt.Sprintf(format, a...), Fix: fix})
}

func (c *checker) run(ctx context.Context) []dnscheck.Finding {
	cfg, err := conf.Load(c.path)
	if err != nil && onlyMissingPassword(err) {
		// Outside the service the systemd credential does not exist; the
		// packaged unit loads it from credentialSource, which root can read.
		if pw := readSecret(c.credentialSource); pw != "" {
			if cfg, err = conf.LoadClient(c.path); err == nil {
				cfg.Upstream.Password = pw
				c.ok("smarthost password", "read from %s, the source of the service's credential \"smarthost\"", c.credentialSource)
			}
		}
	}
	if err != nil && onlyMissingClientSecret(err) {
		cfg, err = c.loadWithClientSecret() // checkoauth.go
	}
	if err != nil {
		// Nothing else can be checked without a configuration: list every
		// problem, as `relayd serve` would refuse to start with them.
		c.configErrors(err)
		return c.out
	}
	comp, errs := build(cfg, slog.New(slog.DiscardHandler))
	if comp.up != nil {
		defer comp.up.Close()
	}
	defer closeAll(comp.hosts)
	modeBad := c.fileModes(cfg)
	for _, e := range errs {
		if reportedMode(e, modeBad) {
			continue // the file-mode finding already says this, with its fix
		}
		c.fail("config", "correct it in "+orDefaults(c.path)+" and re-run relayd check", "%v", e)
	}
	if len(errs) == 0 {
		c.ok("config", "%s is valid", orDefaults(c.path))
	}
	for _, w := range cfg.Warnings() {
		c.warn("config", "correct it in "+orDefaults(c.path), "%s", w)
	}
	c.dkimKeys(cfg, comp.sign)
	c.stateDir(cfg)
	c.flushMode(cfg)
	c.listeners(cfg)
	if c.noDNS {
		c.hostname(cfg) // otherwise dnscheck's HELO finding covers it
	}
	if !c.noSmarthost {
		c.smarthost(ctx, cfg, comp.up)
	}
	if !c.noDNS {
		c.dns(ctx, cfg, comp.sign)
	}
	c.smarthosts(ctx, cfg, comp.hosts, comp.sign) // checkroutes.go
	return c.out
}

// configErrors turns conf.Load's problems into one FAIL each.
func (c *checker) configErrors(err error) {
	where := orDefaults(c.path)
	var list interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &list) {
		errs = list.Unwrap()
	}
	for _, e := range errs {
		var p *conf.Problem
		switch {
		case errors.Is(e, fs.ErrNotExist) && errors.As(e, &p) && p.Key == "":
			c.fail("config", "create it (relayd config example > "+where+") or pass --config FILE", "%v", e)
		case errors.As(e, &p) && p.Key != "":
			c.fail("config "+p.Key, "correct "+p.Key+" in "+where+" and re-run relayd check", "%v", e)
		default:
			c.fail("config", "correct "+where+" and re-run relayd check", "%v", e)
		}
	}
}

// reportedMode reports whether e is the signer's refusal of a key file that
// fileModes already reported.
func reportedMode(e error, bad []string) bool {
	for _, path := range bad {
		if strings.Contains(e.Error(), "chmod 600 "+path) {
			return true
		}
	}
	return false
}

// fileModes checks that secrets are readable by their owner only: DKIM
// keys, the listener's TLS key and the smarthost password. It returns the
// paths reported as FAIL.
func (c *checker) fileModes(cfg *conf.Config) []string {
	type secret struct{ what, path string }
	var files []secret
	for i, k := range cfg.DKIM {
		files = append(files, secret{fmt.Sprintf("dkim[%d].key_file", i), k.KeyFile})
	}
	files = append(files, secret{"listen.tls_key", cfg.Listen.TLSKey}, secret{"upstream.password_file", cfg.Upstream.PasswordFile},
		secret{"upstream.oauth2.client_secret_file", cfg.Upstream.OAuth2.SecretFile}, secret{"upstream.oauth2.key_file", cfg.Upstream.OAuth2.KeyFile})
	if cfg.Upstream.OAuth() && cfg.Upstream.OAuth2.Grant == conf.GrantRefreshToken {
		files = append(files, secret{"oauth2 refresh token", tokenStoreFile(cfg)})
	}
	var bad []string
	for _, f := range files {
		if f.path == "" {
			continue
		}
		st, err := os.Stat(f.path)
		if err != nil {
			continue // loading reports a missing or unreadable file
		}
		what := f.what + " " + f.path
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			c.fail(what, "chmod 600 "+f.path, "mode %04o lets group or others read a secret", perm)
			bad = append(bad, f.path)
			continue
		}
		c.ok(what, "mode %04o: readable by its owner only", st.Mode().Perm())
	}
	return bad
}

// dkimKeys says when mail would leave unsigned or with a weak key.
func (c *checker) dkimKeys(cfg *conf.Config, sign *signer.Signer) {
	if len(cfg.DKIM) == 0 {
		c.warn("dkim", "relayd dkim keygen --domain YOUR.DOMAIN --selector s"+c.now().Format("2006")+
			", add the [[dkim]] entry it prints to the config, and publish its DNS record",
			"no [[dkim]] key: mail leaves unsigned, and Gmail, Yahoo and Microsoft reject or spam-folder unsigned bulk mail")
		return
	}
	if sign == nil {
		return
	}
	for _, k := range sign.Keys() {
		if k.Algorithm == signer.AlgRSA && k.Bits < 2048 {
			c.warn("dkim "+k.Selector+"._domainkey."+k.Domain,
				"relayd dkim keygen --domain "+k.Domain+" --selector NEWSELECTOR --algorithm rsa, publish it, then switch the [[dkim]] entry",
				"RSA key of %d bits in %s: RFC 8301 §3.2 asks for at least 2048 bits for new keys", k.Bits, k.File)
		}
	}
}

// stateDir checks that the spool can be written and has room. The check
// runs with the caller's identity, which may not be the daemon's.
func (c *checker) stateDir(cfg *conf.Config) {
	dir := cfg.StateDir
	what := "state_dir " + dir
	existing := dir
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	fix := "mkdir -p " + dir + " && chown relayd:relayd " + dir + " (the user relayd serve runs as)"
	// As another user than root, say what relayd serve run as this user
	// would hit: it fails to start, so this is a FAIL (with the way to
	// check as the daemon's user instead).
	asUser := "relayd serve run as uid " + strconv.Itoa(c.euid) + " would fail to start; run relayd check as the daemon's user (sudo relayd check, or sudo -u relayd relayd check) to check for it; else: "
	f, err := os.CreateTemp(existing, ".relayd-check-*")
	if err != nil {
		if c.euid != 0 && errors.Is(err, fs.ErrPermission) {
			c.fail(what, asUser+fix, "cannot create a file in %s as uid %d: %v", existing, c.euid, err)
			return
		}
		c.fail(what, fix, "cannot create a file in %s: %v", existing, err)
		return
	}
	// relayd serve also sets the modes of state_dir: only its owner (or
	// root) may.
	if st, err := os.Stat(dir); err == nil && c.euid != 0 {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != c.euid {
			f.Close()
			os.Remove(f.Name())
			c.fail(what, asUser+fix, "owned by uid %d, not uid %d: relayd serve cannot set its mode", sys.Uid, c.euid)
			return
		}
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	note := ""
	if existing != dir {
		note = " (it does not exist yet; relayd serve creates it)"
	}
	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		c.warn(what, "check the filesystem holding "+existing, "writable%s, but its free space is unknown: %v", note, err)
		return
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	minFree := cfg.Queue.MinFreeBytes
	if free < minFree {
		c.fail(what, fmt.Sprintf("delete files on or grow the filesystem holding %s, or lower queue.min_free_bytes (now %d)", existing, minFree),
			"only %s free, less than queue.min_free_bytes (%s): relayd answers new mail with 452 4.3.1", humanBytes(free), humanBytes(minFree))
		return
	}
	c.ok(what, "writable%s, %s free (queue.min_free_bytes %s)", note, humanBytes(free), humanBytes(minFree))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// listeners tries to bind each listener address and closes it at once.
func (c *checker) listeners(cfg *conf.Config) {
	type addr struct{ key, a string }
	var addrs []addr
	for _, l := range []struct {
		key   string
		addrs []string
	}{{"listen.smtp", cfg.Listen.SMTP}, {"listen.submission", cfg.Listen.Submission}, {"listen.submissions", cfg.Listen.Submissions}} {
		for _, a := range l.addrs {
			addrs = append(addrs, addr{l.key, a})
		}
	}
	if cfg.Metrics.Listen != "" {
		addrs = append(addrs, addr{"metrics.listen", cfg.Metrics.Listen})
	}
	for _, a := range addrs {
		what := a.key + " " + a.a
		l, err := net.Listen("tcp", a.a)
		if err == nil {
			l.Close()
			c.ok(what, "can be bound")
			continue
		}
		_, port, _ := net.SplitHostPort(a.a)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			c.warn(what, "if relayd is not running, find the other program with: ss -ltnp 'sport = :"+port+"' and stop it or choose another address",
				"in use (is relayd already running?)")
		case isLoopbackV6Unavailable(a.a, err):
			c.warn(what, "enable IPv6 on the loopback interface, or remove "+a.a+" from "+a.key,
				"IPv6 loopback is not available; relayd serve skips this listener")
		case errors.Is(err, syscall.EACCES) && c.euid != 0:
			c.warn(what, "relayd serve needs root or CAP_NET_BIND_SERVICE for ports below 1024 (the shipped systemd unit grants it); run relayd check as root to test the bind",
				"permission denied as uid %d", c.euid)
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			c.fail(what, "use an address this host has (ip -brief address), or 0.0.0.0 / [::] for all", "no such local address: %v", err)
		default:
			c.fail(what, "correct "+a.key+" or free the address", "cannot bind: %v", err)
		}
	}
}

// hostname warns about an EHLO name receivers will not accept; without the
// DNS checks it is the only check of it.
func (c *checker) hostname(cfg *conf.Config) {
	h := strings.TrimSuffix(cfg.Hostname, ".")
	what := "hostname " + h
	if !strings.Contains(h, ".") || strings.HasSuffix(h, ".localdomain") || strings.HasSuffix(h, ".local") {
		c.warn(what, `set hostname = "relay.example.com" in the config: a name under your domain with an A record for this host`,
			"not a fully qualified domain name; many receivers reject such EHLO names (RFC 5321 §2.3.5)")
		return
	}
	c.ok(what, "fully qualified")
}

// smarthost probes every configured relay without sending mail.
func (c *checker) smarthost(ctx context.Context, cfg *conf.Config, up *upstream.Client) {
	u := cfg.Upstream
	if u.Hold() {
		c.warn("smarthost", `set upstream.address = "smtp.your-isp.example:587" and upstream.username, and put the password in `+
			credentialSource+` (the packaged unit passes it to relayd as the systemd credential "smarthost": leave password_file unset), or without the unit in a file named by upstream.password_file`,
			"no upstream.address: relayd accepts mail and holds it in the queue until a smarthost is configured")
		return
	}
	if up == nil {
		return // build() already reported why the client cannot be made
	}
	if u.OAuth() {
		c.oauthToken(ctx, cfg) // checkoauth.go
	}
	pctx, cancel := context.WithTimeout(ctx, checkProbeTimeout)
	defer cancel()
	failed := map[string]bool{}
	for _, e := range probeErrors(up.Probe(pctx)) {
		failed[e.Addr] = true
		c.out = append(c.out, diagnoseLogin(e, cfg))
	}
	for _, addr := range append([]string{u.Address}, u.Fallback...) {
		if failed[addr] {
			continue
		}
		c.ok("smarthost "+addr, "%s", probeSummary(cfg))
	}
	if failed[u.Address] {
		return
	}
	c.clock(ctx, cfg)
}

// probeErrors splits Probe's joined error into one *upstream.Error per relay.
func probeErrors(err error) []*upstream.Error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []*upstream.Error
	for _, e := range errs {
		var ue *upstream.Error
		if !errors.As(e, &ue) {
			ue = &upstream.Error{Stage: upstream.StageConnect, Err: e}
		}
		out = append(out, ue)
	}
	return out
}

func probeSummary(cfg *conf.Config) string {
	u := cfg.Upstream
	var steps []string
	switch u.TLS {
	case tlsmode.Implicit:
		steps = append(steps, "implicit TLS, certificate verified")
	case tlsmode.None:
		steps = append(steps, "connected without TLS (loopback)")
	default:
		steps = append(steps, "STARTTLS, certificate verified")
	}
	if u.OAuth() {
		steps = append(steps, "AUTH "+strings.ToUpper(u.Auth)+" with an OAuth2 token accepted for "+u.Username)
	} else if u.Username != "" {
		steps = append(steps, "AUTH accepted for "+u.Username)
	} else {
		steps = append(steps, "no AUTH configured")
	}
	return strings.Join(steps, ", ") + "; no mail sent"
}

// speaksTLS reports whether a TLS handshake with addr completes: told
// apart from a silent server, a server that sends no greeting but speaks
// TLS at once is an implicit-TLS port. Nothing is sent after the
// handshake, so skipping verification exposes nothing.
func speaksTLS(addr string, timeout time.Duration) bool {
	if timeout <= 0 || timeout > 10*time.Second {
		timeout = 10 * time.Second
	}
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	return tc.Handshake() == nil
}

// diagnose turns one probe failure into a finding that names the cause and
// the setting to change: a switch on upstream's classification of it
// (upstream.Kind), with the wording that needs this config.
func diagnose(e *upstream.Error, cfg *conf.Config) dnscheck.Finding {
	host, port, _ := net.SplitHostPort(e.Addr)
	f := dnscheck.Finding{Level: dnscheck.Fail, What: "smarthost " + e.Addr}
	set := func(finding, fix string) dnscheck.Finding {
		f.Finding, f.Fix = finding, fix
		return f
	}
	switch e.Kind() {
	case upstream.KindRefused:
		return set(fmt.Sprintf("connection refused on port %s (is the address right?)", port),
			"check upstream.address (host and port: 587 for STARTTLS, 465 for implicit TLS) against the ISP's documentation")
	case upstream.KindNoHost:
		var dnsErr *net.DNSError
		errors.As(e, &dnsErr)
		return set(fmt.Sprintf("%s does not resolve: %v", host, dnsErr.Err),
			"check the host name in upstream.address against the ISP's documentation")
	case upstream.KindConnectTimeout:
		return set(fmt.Sprintf("no answer connecting to port %s of %s (a firewall dropping outbound port %s?)", port, host, port),
			"allow outbound TCP to port "+port+" (many networks block 25; ISPs take mail on 587 or 465)")
	case upstream.KindCertName:
		var hostErr x509.HostnameError
		errors.As(e, &hostErr)
		return set(fmt.Sprintf("certificate is for %s, not %s", certNames(hostErr.Certificate), hostErr.Host),
			"set upstream.address to a name the certificate lists (e.g. \""+firstCertName(hostErr.Certificate)+":"+port+"\")")
	case upstream.KindCertAuthority:
		var unknownCA x509.UnknownAuthorityError
		errors.As(e, &unknownCA)
		issuer := ""
		if unknownCA.Cert != nil {
			issuer = "issuer " + unknownCA.Cert.Issuer.String() + "; "
		}
		return set("certificate signed by an unknown authority ("+issuer+"set upstream.ca_file?)",
			"set upstream.ca_file to the ISP's CA certificate (PEM), or install it in the system trust store")
	case upstream.KindCertExpired:
		var invalid x509.CertificateInvalidError
		errors.As(e, &invalid)
		return set("certificate has expired or is not yet valid: "+invalid.Detail,
			"if the local clock is right, the ISP must renew it; otherwise fix the clock (timedatectl set-ntp true)")
	case upstream.KindNotTLS:
		return set(fmt.Sprintf("the server does not speak TLS on port %s", port),
			`set upstream.tls = "starttls" (port 587), or use the ISP's implicit-TLS port 465`)
	case upstream.KindGreetingTimeout:
		if cfg.Upstream.TLS != tlsmode.Implicit && (port == "465" || speaksTLS(e.Addr, cfg.Upstream.Timeout.Duration)) {
			return set(fmt.Sprintf("no SMTP greeting on port %s: it may expect TLS from the first byte", port),
				`set upstream.tls = "implicit" (port 465)`)
		}
		// A silent server on another port is not a TLS-mode problem.
		return set(fmt.Sprintf("the smarthost accepted the connection on port %s but sent no SMTP greeting in time", port),
			"the smarthost is overloaded, or a firewall or proxy holds the connection; check upstream.address and try again later")
	case upstream.KindGreetingRefused:
		return set("the smarthost refused the connection: "+replyLine(e),
			"the ISP may block this IP or be down; ask them with this reply, and retry later")
	case upstream.KindNoSTARTTLS:
		return set("server offers no STARTTLS (set tls = \"implicit\" with port 465?)",
			`use the ISP's implicit-TLS port: upstream.address = "`+host+`:465" and upstream.tls = "implicit"; relayd never sends credentials in clear`)
	case upstream.KindSTARTTLSRefused:
		return set("STARTTLS refused: "+replyLine(e), "ask the ISP; meanwhile try its implicit-TLS port 465 with upstream.tls = \"implicit\"")
	case upstream.KindEHLORefused:
		return set(fmt.Sprintf("EHLO %s refused: %s", cfg.Hostname, replyLine(e)),
			`set hostname = "relay.your.domain" to a fully qualified name with an A record`)
	case upstream.KindAuthRejected:
		return set(fmt.Sprintf("535 authentication failed for %q (check username/password_file)", cfg.Upstream.Username),
			"check upstream.username and the password in "+passwordSource(cfg)+" (one line, no extra spaces)")
	case upstream.KindNoAUTH:
		return set("the smarthost does not offer AUTH on this port",
			"remove upstream.username if it needs no login, or use the ISP's submission port 587")
	case upstream.KindAuthRefused:
		return set("AUTH refused: "+replyLine(e), "check upstream.username and "+passwordSource(cfg)+"; the reply says why")
	case upstream.KindAuthFailed:
		return set(fmt.Sprintf("AUTH failed: %v", e.Err), "relayd supports AUTH PLAIN and LOGIN; ask the ISP which mechanisms it offers")
	}
	fix := e.Hint
	if fix == "" {
		fix = "check the [upstream] settings and retry; if it persists, ask the ISP with this message"
	}
	finding := fmt.Sprintf("%s failed: %v", e.Stage, e.Err)
	if e.Code != 0 {
		finding = fmt.Sprintf("%s failed: %s", e.Stage, replyLine(e))
	}
	return set(finding, fix)
}

// replyLine is the smarthost's reply on one line, "554 text" (its
// enhanced code, if any, is left out as in upstream's Message).
func replyLine(e *upstream.Error) string {
	return reply.Reply{Code: e.Code, Text: e.Message}.String()
}

func passwordSource(cfg *conf.Config) string {
	if cfg.Upstream.PasswordFile != "" {
		return cfg.Upstream.PasswordFile
	}
	return `the systemd credential "smarthost"`
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "another name"
	}
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	if len(names) == 0 {
		return "no name"
	}
	return strings.Join(names, ", ")
}

func firstCertName(c *x509.Certificate) string {
	switch {
	case c != nil && len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case c != nil && len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return "NAME"
}

// clock compares the local clock with a date in the smarthost's greeting,
// which Exim, Sendmail and Exchange include (Postfix does not). upstream
// keeps the greeting to itself, so this reads it on a connection of its own
// (the greeting precedes STARTTLS) and QUITs.
func (c *checker) clock(ctx context.Context, cfg *conf.Config) {
	greeting, err := readGreeting(ctx, cfg)
	if err != nil {
		c.ok("clock", "not compared: could not read the smarthost greeting again (%v)", err)
		return
	}
	remote, ok := greetingDate(greeting)
	if !ok {
		c.ok("clock", "not compared: the smarthost greeting carries no date")
		return
	}
	c.out = append(c.out, dnscheck.CheckClock(c.now(), remote))
}

func readGreeting(ctx context.Context, cfg *conf.Config) (string, error) {
	u := cfg.Upstream
	ctx, cancel := context.WithTimeout(ctx, checkStepTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Address)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if u.TLS == tlsmode.Implicit {
		host, _, _ := net.SplitHostPort(u.Address)
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if u.CAFile != "" {
			roots, err := upstream.LoadCAFile(u.CAFile)
			if err != nil {
				return "", err
			}
			tc.RootCAs = roots
		}
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return "", err
		}
		conn = tconn
	}
	tp := textproto.NewConn(conn)
	_, msg, err := tp.ReadResponse(220)
	if err != nil {
		return "", err
	}
	_ = tp.PrintfLine("QUIT")
	_, _, _ = tp.ReadResponse(221)
	return msg, nil
}

// greetingDate finds an RFC 5322 date-time (§3.3) in a greeting, e.g.
// "mx.isp.net ESMTP Exim 4.96 Tue, 06 Jan 2026 10:00:00 +0000".
func greetingDate(greeting string) (time.Time, bool) {
	for _, line := range strings.Split(greeting, "\n") {
		words := strings.Fields(strings.ReplaceAll(line, ";", " "))
		for i := range words {
			// A date is 5 words ("6 Jan 2026 10:00:00 +0000"), 6 with the day
			// of the week, 7 with a "(UTC)" comment.
			for n := 7; n >= 5; n-- {
				if i+n > len(words) {
					continue
				}
				if t, err := mail.ParseDate(strings.Join(words[i:i+n], " ")); err == nil {
					return t, true
				}
			}
		}
	}
	return time.Time{}, false
}

// dns runs dnscheck for the hostname, the smarthost, the DKIM keys and the
// rewrite.sender domain.
func (c *checker) dns(ctx context.Context, cfg *conf.Config, sign *signer.Signer) {
	in := dnscheck.Input{Hostname: cfg.Hostname, Now: c.now()}
	if _, domain, ok := strings.Cut(cfg.Rewrite.Sender, "@"); ok && domain != "" {
		in.Domains = append(in.Domains, domain)
	}
	if sign != nil {
		for _, k := range sign.Keys() {
			_, p, ok := strings.Cut(k.TXT(), "p=")
			if !ok {
				continue
			}
			in.DKIM = append(in.DKIM, dnscheck.DKIMKey{Domain: k.Domain, Selector: k.Selector, Algorithm: k.Algorithm, PublicKey: p})
		}
	}
	if host, _, err := net.SplitHostPort(cfg.Upstream.Address); err == nil {
		in.SmarthostHost = host
	}
	ctx, cancel := context.WithTimeout(ctx, checkDNSTimeout)
	defer cancel()
	ch := &dnscheck.Checker{Resolver: c.resolver, Timeout: checkStepTimeout / 3}
	c.out = append(c.out, ch.Run(ctx, in)...)
}

// credentialSource is where the packaged unit's LoadCredential=smarthost
// reads the smarthost password from.
const credentialSource = "/etc/relayd/smarthost.secret"

// onlyMissingPassword reports whether the config's only problem is that the
// smarthost password is not available here (no password_file and no
// $CREDENTIALS_DIRECTORY: relayd check runs outside the service).
func onlyMissingPassword(err error) bool {
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		return false
	}
	var p *conf.Problem
	return errors.As(errs[0], &p) && p.Key == "upstream.username" && strings.Contains(p.Err.Error(), "no password")
}

func readSecret(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
}
