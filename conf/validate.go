package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"relayd/internal/loopback"
	"relayd/internal/tlsmode"
)

// Validate checks c and reports every problem found, each naming its key
// (with the index for arrays, e.g. "users[1].password_hash").
//
// Validate also normalises and resolves, so that a validated Config is ready
// to use: bare IPs in listen.relay_networks become /32 or /128 prefixes, and
// when upstream.username is set, Upstream.Password is read from
// upstream.password_file or the systemd credential "smarthost" in
// $CREDENTIALS_DIRECTORY.
//
// The result is nil when c is valid; test it with len (or as Errors, not as
// an error interface, where a nil Errors would not compare equal to nil).
func (c *Config) Validate() Errors { return c.validate(osEnv()) }

func (c *Config) validate(e env) Errors {
	var errs Errors
	if c.Hostname == "" {
		errs.add("hostname", "must not be empty")
	} else if !validDNSName(c.Hostname) {
		errs.add("hostname", "%q is not a valid DNS name", c.Hostname)
	}
	if !filepath.IsAbs(c.StateDir) {
		errs.add("state_dir", "%q is not an absolute path", c.StateDir)
	}
	c.Listen.check(&errs, len(c.Users))
	c.checkUsers(&errs)
	c.Upstream.check(&errs, e, defaultScope)
	c.checkSmarthosts(&errs, e) // routes.go
	c.checkRoutes(&errs)
	c.Queue.check(&errs)
	c.checkDKIM(&errs)
	for _, f := range []struct{ key, v string }{{"rewrite.admin", c.Rewrite.Admin}, {"rewrite.sender", c.Rewrite.Sender}, {"upstream.null_sender", c.Upstream.NullSender}} {
		if f.v != "" {
			if err := checkAddrSpec(f.v); err != nil {
				errs.add(f.key, "%w", err)
			}
		}
	}
	for i, d := range c.Rewrite.LocalDomains {
		if !validLocalDomain(d) {
			errs.add(fmt.Sprintf("rewrite.local_domains[%d]", i), "%q is neither a DNS name nor an address literal such as [192.0.2.1]", d)
		}
	}
	if c.Metrics.Listen != "" {
		if _, err := checkHostPort(c.Metrics.Listen, true, 0); err != nil {
			errs.add("metrics.listen", "%w", err)
		}
	}
	checkEnum(&errs, "log.format", c.Log.Format, "text", "json")
	checkEnum(&errs, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	return errs
}

func checkEnum(errs *Errors, key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		errs.add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func (l *Listen) check(errs *Errors, users int) {
	for _, list := range []struct {
		key   string
		addrs []string
	}{{"listen.smtp", l.SMTP}, {"listen.submission", l.Submission}, {"listen.submissions", l.Submissions}} {
		for i, a := range list.addrs {
			if _, err := checkHostPort(a, true, 0); err != nil {
				errs.add(fmt.Sprintf("%s[%d]", list.key, i), "%w", err)
			}
		}
	}
	for i, n := range l.RelayNetworks {
		p, err := parseNet(n)
		if err != nil {
			errs.add(fmt.Sprintf("listen.relay_networks[%d]", i), "%w", err)
			continue
		}
		if p.Bits() == 0 {
			// Never an open relay, not even by configuration: clients
			// that are not on a known network must authenticate.
			errs.add(fmt.Sprintf("listen.relay_networks[%d]", i),
				"%q lets every address on the Internet relay (an open relay); list your networks, or use [[users]] with AUTH", n)
			continue
		}
		l.RelayNetworks[i] = p.String()
	}
	checkRelayUnion(errs, l.RelayNetworks)
	if (l.TLSCert == "") != (l.TLSKey == "") {
		errs.add("listen.tls_cert", "tls_cert and tls_key must be set together")
	}
	for _, list := range []struct {
		key   string
		addrs []string
	}{{"listen.submission", l.Submission}, {"listen.submissions", l.Submissions}} {
		if len(list.addrs) == 0 {
			continue
		}
		if l.TLSCert == "" || l.TLSKey == "" {
			errs.add(list.key, "requires listen.tls_cert and listen.tls_key (AUTH is only offered over TLS)")
		}
		if users == 0 {
			errs.add(list.key, "requires at least one [[users]] account (AUTH is mandatory there)")
		}
	}
	if l.MaxMessageBytes <= 0 {
		errs.add("listen.max_message_bytes", "must be greater than 0")
	}
	if l.MaxRecipients <= 0 {
		errs.add("listen.max_recipients", "must be greater than 0")
	}
	if l.IdleTimeout.Duration <= 0 {
		errs.add("listen.idle_timeout", "must be greater than 0")
	}
	if l.MaxConnections <= 0 {
		errs.add("listen.max_connections", "must be greater than 0")
	}
	if l.MaxConnectionsPerIP <= 0 {
		errs.add("listen.max_connections_per_ip", "must be greater than 0")
	}
	if l.MaxMessagesPerMinutePerIP < 0 {
		errs.add("listen.max_messages_per_minute_per_ip", "must be 0 (no cap) or more")
	}
}

func (c *Config) checkUsers(errs *Errors) {
	seen := map[string]int{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			errs.add(key+".name", "must not be empty")
		case strings.ContainsFunc(u.Name, isSpaceOrControl):
			errs.add(key+".name", "%q contains spaces or control characters", u.Name)
		default:
			if j, dup := seen[u.Name]; dup {
				errs.add(key+".name", "%q is already used by users[%d]", u.Name, j)
			} else {
				seen[u.Name] = i
			}
		}
		if err := checkBcrypt(u.PasswordHash); err != nil {
			errs.add(key+".password_hash", "%w", err)
		}
		if len(u.Senders) == 0 {
			errs.add(key+".senders", `must list at least one envelope sender pattern, e.g. "*@example.com"`)
		}
		for j, s := range u.Senders {
			if s == "" || strings.ContainsFunc(s, isSpaceOrControl) {
				errs.add(fmt.Sprintf("%s.senders[%d]", key, j), "%q is not a sender pattern (e.g. \"*@example.com\", \"app@example.com\")", s)
			}
		}
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func checkBcrypt(h string) error {
	if !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
		return errors.New("is not a bcrypt hash ($2a$, $2b$ or $2y$; e.g. htpasswd -nbBC 12 \"\" PASSWORD)")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return fmt.Errorf("is not a valid bcrypt hash: %w", err)
	}
	return nil
}

func (u *Upstream) check(errs *Errors, e env, sc scope) {
	checkEnum(errs, sc.key+"tls", u.TLS, tlsmode.StartTLS, tlsmode.Implicit, tlsmode.None)
	clear := u.TLS == tlsmode.None
	if u.Address != "" {
		host, err := checkHostPort(u.Address, false, 1)
		if err != nil {
			errs.add(sc.key+"address", "%w", err)
		} else if clear && !loopback.Host(host) {
			errs.add(sc.key+"tls", `"none": refusing to send credentials and mail in clear to a non-loopback smarthost (%s)`, host)
		}
	} else if len(u.Fallback) > 0 {
		errs.add(sc.key+"fallback", "is set but %saddress is empty", sc.key)
	}
	for i, f := range u.Fallback {
		key := fmt.Sprintf("%sfallback[%d]", sc.key, i)
		host, err := checkHostPort(f, false, 1)
		if err != nil {
			errs.add(key, "%w", err)
		} else if clear && !loopback.Host(host) {
			errs.add(key, `tls = "none": refusing to send credentials and mail in clear to a non-loopback smarthost (%s)`, host)
		}
	}
	if u.Timeout.Duration <= 0 {
		errs.add(sc.key+"timeout", "must be greater than 0")
	}
	for _, f := range []struct {
		key string
		n   int
	}{{sc.key + "max_per_minute", u.MaxPerMinute}, {sc.key + "max_per_hour", u.MaxPerHour}, {sc.key + "max_per_day", u.MaxPerDay}} {
		if f.n < 0 {
			errs.add(f.key, "must be 0 (no limit) or more")
		}
	}
	u.checkAuth(errs, e, sc) // oauth2.go
}

// resolvePassword fills u.Password from password_file, else from the
// systemd credential "smarthost", removing one trailing newline.
func (u *Upstream) resolvePassword(errs *Errors, e env, sc scope) {
	if e.noSecrets {
		return
	}
	if u.Username == "" {
		if u.PasswordFile != "" {
			errs.add(sc.key+"password_file", "is set but %susername is empty", sc.key)
		}
		return
	}
	read := func(path string) (string, error) {
		b, err := e.readFile(path)
		if err != nil {
			return "", err
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return pw, nil
	}
	if u.PasswordFile != "" {
		pw, err := read(u.PasswordFile)
		if err != nil {
			errs.add(sc.key+"password_file", "cannot read the smarthost password: %w", err)
			return
		}
		u.Password = pw
		return
	}
	if dir := e.getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		pw, err := read(filepath.Join(dir, sc.cred))
		switch {
		case err == nil:
			u.Password = pw
			return
		case !errors.Is(err, fs.ErrNotExist):
			errs.add(sc.key+"username", "cannot read the systemd credential %q: %w", sc.cred, err)
			return
		}
	}
	if u.Password == "" {
		errs.add(sc.key+"username", `is set but there is no password: set %spassword_file, or pass the systemd credential %q (LoadCredential=%s:/path)`, sc.key, sc.cred, sc.cred)
	}
}

func (q *Queue) check(errs *Errors) {
	if q.MinBackoff.Duration <= 0 {
		errs.add("queue.min_backoff", "must be greater than 0")
	}
	if q.MaxBackoff.Duration < q.MinBackoff.Duration {
		errs.add("queue.max_backoff", "%s is less than queue.min_backoff (%s)", q.MaxBackoff, q.MinBackoff)
	}
	if q.MaxAge.Duration <= 0 {
		errs.add("queue.max_age", "must be greater than 0")
	}
	if q.DelayWarning.Duration < 0 {
		errs.add("queue.delay_warning", "must be 0 (no warning) or more")
	}
	if q.Concurrency < 1 || q.Concurrency > 64 {
		errs.add("queue.concurrency", "%d is not from 1 to 64", q.Concurrency)
	}
	if q.MinFreeBytes < 0 {
		errs.add("queue.min_free_bytes", "must be 0 or more")
	}
	switch q.Flush {
	case "auto", "syncfs", "fdatasync":
	default:
		errs.add("queue.flush", "%q is not auto, syncfs or fdatasync", q.Flush)
	}
	if q.FlushForce && q.Flush != "syncfs" {
		errs.add("queue.flush_force", "applies only to queue.flush = \"syncfs\" (it is %q)", q.Flush)
	}
}

func (c *Config) checkDKIM(errs *Errors) {
	seen := map[string]int{}
	for i, k := range c.DKIM {
		key := fmt.Sprintf("dkim[%d]", i)
		if k.Domain == "" {
			errs.add(key+".domain", "must not be empty")
		} else if !validDNSName(k.Domain) {
			errs.add(key+".domain", "%q is not a valid DNS name", k.Domain)
		}
		if k.Selector == "" {
			errs.add(key+".selector", "must not be empty")
		} else if !validDNSName(k.Selector) {
			errs.add(key+".selector", "%q is not a valid selector (letters, digits, hyphens, dots)", k.Selector)
		}
		if k.KeyFile == "" {
			errs.add(key+".key_file", "must not be empty (create one with: relayd dkim keygen)")
		}
		id := strings.ToLower(k.Selector + "._domainkey." + k.Domain)
		if j, dup := seen[id]; dup && k.Domain != "" && k.Selector != "" {
			errs.add(key, "domain %q with selector %q is already configured in dkim[%d]", k.Domain, k.Selector, j)
		} else {
			seen[id] = i
		}
	}
}
