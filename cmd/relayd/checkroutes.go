package main

import (
	"context"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"relayd/conf"
	"relayd/dnscheck"
	"relayd/signer"
	"relayd/upstream"
)

// smarthosts checks every [[smarthost]] as [upstream] is checked (TLS,
// certificate, login; no mail sent) and, for the domains of the routes
// that use it (and its from address), SPF for that smarthost, DKIM and
// DMARC. Findings the default's checks already made are not repeated.
func (c *checker) smarthosts(ctx context.Context, cfg *conf.Config, hosts map[string]*upstream.Client, sign *signer.Signer) {
	for i, s := range cfg.Smarthosts {
		scfg := forSmarthost(cfg, s)
		if !c.noSmarthost {
			n := len(c.out)
			c.smarthost(ctx, scfg, hosts[s.Name])
			for j := n; j < len(c.out); j++ {
				c.out[j].Finding = ownKeys(c.out[j].Finding, i, s.Name)
				c.out[j].Fix = ownKeys(c.out[j].Fix, i, s.Name)
			}
		}
		if c.noDNS {
			continue
		}
		in := dnscheck.Input{Hostname: cfg.Hostname, Now: c.now(), Domains: routeDomains(cfg, s)}
		if host, _, err := net.SplitHostPort(s.Address); err == nil {
			in.SmarthostHost = host
		}
		if sign != nil {
			for _, k := range sign.Keys() {
				_, p, ok := strings.Cut(k.TXT(), "p=")
				if ok && conf.InDomains(strings.ToLower(k.Domain), in.Domains) {
					in.DKIM = append(in.DKIM, dnscheck.DKIMKey{Domain: k.Domain, Selector: k.Selector, Algorithm: k.Algorithm, PublicKey: p})
				}
			}
		}
		dctx, cancel := context.WithTimeout(ctx, checkDNSTimeout)
		ch := &dnscheck.Checker{Resolver: c.resolver, Timeout: checkStepTimeout / 3}
		for _, f := range ch.Run(dctx, in) {
			if !slices.ContainsFunc(c.out, func(g dnscheck.Finding) bool { return g.What == f.What && g.Finding == f.Finding }) {
				f.What = s.Name + ": " + f.What
				c.out = append(c.out, f)
			}
		}
		cancel()
	}
}

// upstreamKey is a key of [upstream] in a finding's text.
var upstreamKey = regexp.MustCompile(`\bupstream\.([a-z_0-9]+)`)

// ownKeys rewrites what the [upstream] checks say for the i-th
// [[smarthost]], name: its keys are smarthost[i].KEY (as the config
// errors name them) and its password credential is "smarthost-NAME".
func ownKeys(text string, i int, name string) string {
	text = upstreamKey.ReplaceAllString(text, "smarthost["+strconv.Itoa(i)+"].$1")
	text = strings.ReplaceAll(text, `credential "smarthost"`, `credential "smarthost-`+name+`"`)
	return strings.ReplaceAll(text, `credential "oauth2"`, `credential "oauth2-`+name+`"`)
}

// routeDomains are the sender and header From domains mail through s
// comes from: those its routes name, and the domain of its from.
func routeDomains(cfg *conf.Config, s conf.Smarthost) []string {
	var out []string
	add := func(d string) {
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, r := range cfg.Routes {
		if r.Smarthost != s.Name {
			continue
		}
		for _, d := range append(slices.Clone(r.SenderDomain), r.FromDomain...) {
			add(d)
		}
	}
	if _, d, ok := strings.Cut(s.From, "@"); ok {
		add(conf.NormalizeDomain(d))
	}
	return out
}
