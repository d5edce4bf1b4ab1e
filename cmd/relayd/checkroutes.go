package main

import (
	"context"
	"net"
	"slices"
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
	for _, s := range cfg.Smarthosts {
		scfg := forSmarthost(cfg, s)
		if !c.noSmarthost {
			c.smarthost(ctx, scfg, hosts[s.Name])
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
