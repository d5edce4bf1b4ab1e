package main

import (
	"relayd/cleanup"
	"relayd/conf"
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

// sevenBitOnly reports that the current smarthost did not offer 8BITMIME
// when last asked, so cleanup downgrades 8-bit parts before signing.
func (d *daemon) sevenBitOnly() bool {
	d.mu.Lock()
	up := d.up
	d.mu.Unlock()
	return up != nil && up.SevenBitOnly()
}
