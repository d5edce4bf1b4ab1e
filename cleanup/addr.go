package cleanup

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// maxPath is the longest reverse-path or forward-path (RFC 5321 §4.5.3.1.3).
const maxPath = 256

// ParseAddress checks an envelope address as given in MAIL or RCPT, with
// its angle brackets already removed, and returns it in canonical form.
// Source routes ("@a,@b:user@c") are stripped (RFC 5321 §4.1.1.3 and
// appendix C). "" is the null path and is returned unchanged.
func ParseAddress(addr string) (string, *smtp.SMTPError) {
	if i := strings.LastIndexByte(addr, ':'); strings.HasPrefix(addr, "@") && i > 0 {
		addr = addr[i+1:]
	}
	switch {
	case addr == "":
		return "", nil
	case len(addr) > maxPath:
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Address too long (RFC 5321 section 4.5.3.1.3)")
	case !utf8.ValidString(addr):
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Address is not valid UTF-8")
	case strings.ContainsAny(addr, "\r\n\x00\t <>"):
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Address contains a forbidden character")
	}
	local, domain, hasDomain := cutDomain(addr)
	// A trailing dot ("root@vm.") is the root of the DNS, not part of the
	// name: tolerated and dropped, as Postfix does.
	if d, ok := strings.CutSuffix(domain, "."); ok && hasDomain && !strings.HasPrefix(domain, "[") {
		domain = d
	}
	// An '@' in the local part is only valid inside a quoted string
	// (RFC 5321 section 4.1.2): "a@@example.com" is not an address.
	if local == "" || (hasDomain && !validDomain(domain)) || (strings.Contains(local, "@") && !strings.HasPrefix(local, `"`)) {
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad address syntax")
	}
	if hasDomain {
		return local + "@" + strings.ToLower(domain), nil
	}
	return local, nil
}

// cutDomain splits at the last '@' outside a quoted local part.
func cutDomain(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || strings.LastIndexByte(addr, '"') > i {
		return addr, "", false
	}
	return addr[:i], addr[i+1:], true
}

// validDomain accepts a DNS name or an address literal ("[192.0.2.1]").
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		return strings.HasSuffix(d, "]") && len(d) > 2
	}
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if r < 0x80 && !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// Domain returns the lower-case domain of addr, or "" when it has none.
func Domain(addr string) string {
	_, d, ok := cutDomain(addr)
	if !ok {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

// isLocal reports whether addr names this host rather than a real mail
// domain: no domain at all ("root"), or one of the host's own names (see
// Config.LocalDomains and Host.LocalDomains), compared case-insensitively
// and with a trailing dot tolerated.
func (c *Config) isLocal(addr string) bool {
	_, d, ok := cutDomain(addr)
	if !ok {
		return true
	}
	set := c.local
	if set.names == nil { // a Config not passed through Update
		set = newLocalSet(c.Hostname, c.LocalDomains)
	}
	return set.has(d)
}

// mapRecipient maps an envelope recipient: a local address (root, cron,
// www-data, user@this-host) goes to rewrite.admin; without an admin it is
// refused, never sent to the smarthost as a bare name.
func (c *Config) mapRecipient(addr string) (string, *smtp.SMTPError) {
	addr, err := ParseAddress(addr)
	if err != nil {
		return "", err
	}
	if addr == "" {
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Null recipient")
	}
	if !c.isLocal(addr) {
		return addr, nil
	}
	if c.Admin == "" {
		return "", smtpErr(550, smtp.EnhancedCode{5, 1, 1},
			"<"+addr+">: local address, and rewrite.admin is not set to receive local mail")
	}
	return c.Admin, nil
}

// mapSender maps an envelope sender: a local sender (no domain, or one of
// this host's names) becomes rewrite.sender; without one it is qualified
// with the hostname (as Postfix's myorigin does). The null sender stays null.
func (c *Config) mapSender(addr string) (string, *smtp.SMTPError) {
	addr, err := ParseAddress(addr)
	if err != nil || addr == "" || !c.isLocal(addr) {
		return addr, err
	}
	if c.Sender != "" {
		return c.Sender, nil
	}
	return c.qualify(addr), nil
}

// qualify puts a local address at the configured hostname: "root" and
// "root@localhost" become "root@relay.example.com" (RFC 5322 §3.4.1 wants a
// domain; Postfix's append_at_myorigin does the same).
func (c *Config) qualify(addr string) string {
	local, _, _ := cutDomain(addr)
	return local + "@" + c.Hostname
}

// localWithComment splits the legacy form "root (Cron Daemon)" that cron,
// mdadm and other local programs write into From: an address followed by a
// comment naming the sender (RFC 5322 section 3.2.2; net/mail accepts it
// only for a qualified address). The comment is returned as the display
// name so that rewriting a local From keeps it. Anything else comes back
// as the address, unchanged.
func localWithComment(v string) (display, addr string) {
	i := strings.IndexByte(v, '(')
	if i <= 0 || !strings.HasSuffix(v, ")") || strings.ContainsAny(v[:i], "\"") {
		return "", v
	}
	addr = strings.TrimSpace(v[:i])
	display = strings.TrimSpace(v[i+1 : len(v)-1])
	if addr == "" || strings.ContainsAny(addr, " \t") || strings.ContainsAny(display, "()") {
		return "", v
	}
	return display, addr
}
