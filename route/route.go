// Package route chooses the smarthost of each recipient of a message from
// the [[route]] tables of the configuration. It is pure: no I/O, no clock.
//
// Invariants: Match is deterministic; the first route (in file order)
// whose matchers all match wins; a route matches only through the matchers
// it sets (at least one: conf refuses a route with none); a domain matches
// itself and its subdomains, case-insensitively, ignoring a trailing dot;
// no match yields conf.DefaultRoute ("default", the [upstream] smarthost).
// The null sender has no domain and matches no sender_domain.
package route

import (
	"strings"

	"relayd/conf"
)

// Default is the name of the [upstream] smarthost.
const Default = conf.DefaultRoute

// Matcher picks smarthosts. The zero value and nil send everything to
// Default.
type Matcher struct {
	rules []conf.Route
}

// New returns a Matcher for routes as conf validated them (domains
// normalised). The slice is copied.
func New(routes []conf.Route) *Matcher {
	m := &Matcher{rules: make([]conf.Route, len(routes))}
	for i, r := range routes {
		m.rules[i] = conf.Route{
			SenderDomain:    normAll(r.SenderDomain),
			FromDomain:      normAll(r.FromDomain),
			RecipientDomain: normAll(r.RecipientDomain),
			Smarthost:       r.Smarthost,
		}
	}
	return m
}

func normAll(list []string) []string {
	out := make([]string, len(list))
	for i, d := range list {
		out[i] = conf.NormalizeDomain(d)
	}
	return out
}

// Match returns the smarthost name for recipient rcpt of a message with
// envelope sender envFrom ("" for <>) and header From domain fromDomain
// ("" when unknown).
func (m *Matcher) Match(envFrom, fromDomain, rcpt string) string {
	if m == nil {
		return Default
	}
	sd, fd, rd := Domain(envFrom), conf.NormalizeDomain(fromDomain), Domain(rcpt)
	for _, r := range m.rules {
		if matches(r.SenderDomain, sd) && matches(r.FromDomain, fd) && matches(r.RecipientDomain, rd) &&
			len(r.SenderDomain)+len(r.FromDomain)+len(r.RecipientDomain) > 0 {
			return r.Smarthost
		}
	}
	return Default
}

// matches: an unset matcher matches everything; a set one only a domain
// in its list.
func matches(list []string, d string) bool {
	if len(list) == 0 {
		return true
	}
	return d != "" && conf.InDomains(d, list)
}

// Domain is the normalised domain of an address ("" when it has none).
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return conf.NormalizeDomain(addr[i+1:])
}

// Empty reports whether m routes everything to Default.
func (m *Matcher) Empty() bool { return m == nil || len(m.rules) == 0 }

// Uses reports the smarthost names the routes name, in first-use order.
func (m *Matcher) Uses() []string {
	if m == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range m.rules {
		if !seen[r.Smarthost] {
			seen[r.Smarthost] = true
			out = append(out, r.Smarthost)
		}
	}
	return out
}
