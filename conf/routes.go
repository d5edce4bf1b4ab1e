package conf

import (
	"fmt"
	"strings"
	"time"

	"relayd/internal/tlsmode"
)

// Smarthost is one [[smarthost]]: a named smarthost with every key of
// [upstream] (its own credentials, fallback relays and rate limits), chosen
// for a message by the [[route]] tables. [upstream] stays the default
// route, named "default".
type Smarthost struct {
	Name string `toml:"name"`
	// From is the address this smarthost's account may send as: mail
	// through it whose header From differs is rewritten at intake to
	// From: "Original Name via relayd" <From> (the original address kept
	// in Reply-To), and its envelope sender becomes From. "" changes
	// nothing.
	From string `toml:"from"`
	// Upstream holds the smarthost's keys; the decoder reads its fields
	// as keys of the [[smarthost]] table itself (embedded, no TOML name).
	Upstream
}

// DefaultRoute names the [upstream] smarthost in [[route]] smarthost; no
// [[smarthost]] may take the name.
const DefaultRoute = "default"

// Route is one [[route]]: mail matching every matcher that is set goes
// through Smarthost. A domain matches itself and its subdomains.
// SenderDomain matches the envelope sender's domain, FromDomain the header
// From's, RecipientDomain each recipient's own (a message whose recipients
// take different routes is delivered per route).
type Route struct {
	SenderDomain    []string `toml:"sender_domain"`
	FromDomain      []string `toml:"from_domain"`
	RecipientDomain []string `toml:"recipient_domain"`
	Smarthost       string   `toml:"smarthost"` // a [[smarthost]] name or "default"
}

// setDefaults gives a [[smarthost]] element [upstream]'s defaults before
// its keys are decoded over them.
func (s *Smarthost) setDefaults() {
	s.TLS = tlsmode.StartTLS
	s.Timeout = Duration{2 * time.Minute}
}

// String prints the smarthost with its secrets redacted (Upstream's
// String would otherwise be promoted and drop the name).
func (s Smarthost) String() string {
	return fmt.Sprintf("{Name:%s From:%s Upstream:%s}", s.Name, s.From, s.Upstream.String())
}

// GoString is String for %#v.
func (s Smarthost) GoString() string { return s.String() }

// scope says which table an Upstream was read from, for problem keys and
// the names of its systemd credentials.
type scope struct {
	key       string // "upstream." or "smarthost[1]."
	cred      string // systemd credential holding the password
	oauthCred string // systemd credential holding the OAuth2 client secret
}

var defaultScope = scope{key: "upstream.", cred: "smarthost", oauthCred: "oauth2"}

// smarthostScope is the scope of smarthost[i] named name: its systemd
// credentials are "smarthost-NAME" and "oauth2-NAME".
func smarthostScope(i int, name string) scope {
	return scope{key: fmt.Sprintf("smarthost[%d].", i), cred: "smarthost-" + name, oauthCred: "oauth2-" + name}
}

// Smarthost returns the [[smarthost]] named name, or [upstream] as a
// Smarthost named "default" for "default"; ok is false for an unknown name.
func (c *Config) Smarthost(name string) (Smarthost, bool) {
	if name == DefaultRoute {
		return Smarthost{Name: DefaultRoute, Upstream: c.Upstream}, true
	}
	for _, s := range c.Smarthosts {
		if s.Name == name {
			return s, true
		}
	}
	return Smarthost{}, false
}

func (c *Config) checkSmarthosts(errs *Errors, e env) {
	seen := map[string]int{}
	for i := range c.Smarthosts {
		s := &c.Smarthosts[i]
		key := fmt.Sprintf("smarthost[%d]", i)
		switch {
		case s.Name == "":
			errs.add(key+".name", "must not be empty (routes name the smarthost)")
		case strings.EqualFold(s.Name, DefaultRoute):
			errs.add(key+".name", "%q is reserved for [upstream], the default route", s.Name)
		case !validName(s.Name):
			errs.add(key+".name", "%q may hold only letters, digits, '-', '_' and '.'", s.Name)
		default:
			if j, dup := seen[s.Name]; dup {
				errs.add(key+".name", "%q is already used by smarthost[%d]", s.Name, j)
			} else {
				seen[s.Name] = i
			}
		}
		if s.Address == "" {
			errs.add(key+".address", "must be set (host:port of the smarthost)")
		}
		s.check(errs, e, smarthostScope(i, s.Name))
		for _, f := range []struct{ key, v string }{{key + ".from", s.From}, {key + ".null_sender", s.NullSender}} {
			if f.v != "" {
				if err := checkAddrSpec(f.v); err != nil {
					errs.add(f.key, "%w", err)
				}
			}
		}
	}
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}

// checkRoutes validates [[route]] and normalises its domains (lower case,
// no trailing dot). A route can never match when an earlier one matches
// everything it does: for every matcher the earlier route sets, this one
// sets it too with only domains the earlier one covers.
func (c *Config) checkRoutes(errs *Errors) {
	for i := range c.Routes {
		r := &c.Routes[i]
		key := fmt.Sprintf("route[%d]", i)
		switch _, ok := c.Smarthost(r.Smarthost); {
		case r.Smarthost == "":
			errs.add(key+".smarthost", `must be set: a [[smarthost]] name, or "default" for [upstream]`)
		case !ok:
			errs.add(key+".smarthost", "%q is not the name of a [[smarthost]] (nor \"default\")%s", r.Smarthost, c.knownNames())
		}
		if len(r.SenderDomain)+len(r.FromDomain)+len(r.RecipientDomain) == 0 {
			errs.add(key, "has no matcher: set sender_domain, from_domain or recipient_domain")
			continue
		}
		bad := false
		for _, m := range r.matchers() {
			for j, d := range *m.list {
				n := NormalizeDomain(d)
				if !validDNSName(n) {
					errs.add(fmt.Sprintf("%s.%s[%d]", key, m.key, j), "%q is not a domain name", d)
					bad = true
					continue
				}
				(*m.list)[j] = n
			}
		}
		if bad {
			continue
		}
		for j := range i {
			if c.Routes[j].covers(*r) {
				errs.add(key, "can never match: route[%d] (smarthost %q) comes first and matches all its mail", j, c.Routes[j].Smarthost)
				break
			}
		}
	}
}

func (c *Config) knownNames() string {
	if len(c.Smarthosts) == 0 {
		return ": no [[smarthost]] is configured"
	}
	names := make([]string, len(c.Smarthosts))
	for i, s := range c.Smarthosts {
		names[i] = fmt.Sprintf("%q", s.Name)
	}
	return "; known: " + strings.Join(names, ", ")
}

type matcher struct {
	key  string
	list *[]string
}

func (r *Route) matchers() []matcher {
	return []matcher{{"sender_domain", &r.SenderDomain}, {"from_domain", &r.FromDomain}, {"recipient_domain", &r.RecipientDomain}}
}

// covers reports whether every message recipient r2 matches, r matches too.
func (r Route) covers(r2 Route) bool {
	m1, m2 := r.matchers(), r2.matchers()
	for k := range m1 {
		a, b := *m1[k].list, *m2[k].list
		if len(a) == 0 {
			continue // r does not restrict this one
		}
		if len(b) == 0 {
			return false // r2 matches domains outside a
		}
		for _, d := range b {
			if !InDomains(d, a) {
				return false
			}
		}
	}
	return true
}

// NormalizeDomain is d in lower case without a trailing dot.
func NormalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// InDomains reports whether domain d (normalised) is one of list or a
// subdomain of one.
func InDomains(d string, list []string) bool {
	for _, l := range list {
		if d == l || strings.HasSuffix(d, "."+l) {
			return true
		}
	}
	return false
}

// routeWarnings: smarthosts no route uses.
func (c *Config) routeWarnings() []string {
	var w []string
	for i, s := range c.Smarthosts {
		used := false
		for _, r := range c.Routes {
			used = used || r.Smarthost == s.Name
		}
		if !used && s.Name != "" {
			w = append(w, fmt.Sprintf("smarthost[%d]: %q is used by no [[route]]: no mail goes through it", i, s.Name))
		}
	}
	return w
}
