package main

import (
	"relayd/cleanup"
	"relayd/conf"
	"relayd/route"
)

// localDomains finds the host's own names for cleanup (issue 18): what the
// machine says about itself, plus rewrite.local_domains. The domains of
// rewrite.admin, rewrite.sender and the DKIM keys receive real mail, so
// the machine's facts never make them local.
func localDomains(cfg *conf.Config, host cleanup.Host) []string {
	var mail []string
	for _, a := range []string{cfg.Rewrite.Admin, cfg.Rewrite.Sender} {
		if d := cleanup.Domain(a); d != "" {
			mail = append(mail, d)
		}
	}
	for _, k := range cfg.DKIM {
		mail = append(mail, k.Domain)
	}
	return host.LocalDomains(cfg.Rewrite.LocalDomains, mail)
}

// sevenBitOnly is cleanup's SevenBitOnly under cfg's routes: whether the
// smarthost the recipients take (the first one's: intake splits a message
// per smarthost) did not offer 8BITMIME when last asked, so cleanup
// downgrades 8-bit parts before signing.
func (d *daemon) sevenBitOnly(cfg *conf.Config) func(from, fromDomain string, rcpts []string) bool {
	var m *route.Matcher
	if len(cfg.Routes) > 0 {
		m = route.New(cfg.Routes)
	}
	return func(from, fromDomain string, rcpts []string) bool {
		d.mu.Lock()
		up, hosts := d.up, d.hosts
		d.mu.Unlock()
		if m != nil && len(rcpts) > 0 {
			if name := m.Match(from, fromDomain, rcpts[0]); name != conf.DefaultRoute {
				up = hosts[name]
			}
		}
		return up != nil && up.SevenBitOnly()
	}
}
