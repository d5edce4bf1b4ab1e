package dnscheck

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// DefaultTimeout bounds one query when Checker.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// DKIMKey is one configured DKIM key, as the signer would use it.
type DKIMKey struct {
	Domain    string
	Selector  string
	Algorithm string // "rsa" or "ed25519"
	PublicKey string // base64 p= value implied by the private key
}

// Input is what the checks compare DNS against.
type Input struct {
	Hostname      string       // EHLO name
	PublicIPs     []netip.Addr // the host's public/sending IPs, if known
	Domains       []string     // domains for SPF/DMARC/MX; DKIM domains are added and all deduplicated
	DKIM          []DKIMKey
	SmarthostHost string // host part of upstream.address
	Now           time.Time
}

// Checker runs the DNS checks against one resolver.
type Checker struct {
	Resolver string        // host:port of a recursive DNS server; "" means SystemResolver
	Timeout  time.Duration // per query; 0 means DefaultTimeout
	Client   *dns.Client   // optional; its Net is used for the first try
}

// Run performs every check and returns the findings in a stable order:
// resolver, HELO and rDNS, smarthost, then per DKIM key, then per domain
// SPF, DMARC and MX. If the resolver does not answer, the result is exactly
// one FAIL.
func (c *Checker) Run(ctx context.Context, in Input) []Finding {
	server := c.Resolver
	if server == "" {
		s, err := SystemResolver()
		if err != nil {
			return []Finding{newFail("resolver", "pass --resolver HOST:PORT or add a nameserver line to /etc/resolv.conf",
				"no resolver to ask: %v", err)}
		}
		server = s
	}
	r := newResolver(server, c.client())
	authOnly, err := r.probeFor(ctx, append(domains(in), in.Hostname))
	if err != nil {
		return []Finding{resolverFailure(server, err)}
	}
	ru := &run{r: r, in: in}
	if authOnly != "" {
		ru.add(authoritativeOnly(server, authOnly))
	}
	ru.checkHost(ctx)
	ru.resolveSmarthost(ctx)
	for _, k := range in.DKIM {
		ru.checkDKIM(ctx, k)
	}
	for _, d := range domains(in) {
		ru.checkSPF(ctx, d)
		ru.checkDMARC(ctx, d)
		ru.checkMX(ctx, d)
	}
	if err := r.deadErr(); err != nil {
		// The resolver stopped answering part way: findings that only say
		// "lookup failed" are noise; keep the real ones and say why once.
		var out []Finding
		for i, f := range ru.out {
			if !ru.transport[i] {
				out = append(out, f)
			}
		}
		return append(out, resolverFailure(server, err))
	}
	return ru.out
}

func (c *Checker) client() *dns.Client {
	if c.Client != nil {
		return c.Client
	}
	t := c.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return &dns.Client{Net: "udp", Timeout: t}
}

func resolverFailure(server string, err error) Finding {
	return newFail("resolver", "pass --resolver HOST:PORT or fix /etc/resolv.conf",
		"resolver %s did not answer: %v", server, err)
}

// run is the state of one Run: the resolver with its cache and the findings
// so far.
type run struct {
	r         *resolver
	in        Input
	out       []Finding
	transport map[int]bool // indexes of findings caused by a dead resolver
	after     []Finding    // findings to add after the one being made (DMARC reports)

	smarthostAddrs []netip.Addr
	ispSPF         *string // memoized smarthost SPF domain ("" if none)
}

func (ru *run) add(fs ...Finding) {
	ru.out = append(ru.out, fs...)
}

// lookupFailed records a finding for a failed query.
func (ru *run) lookupFailed(what string, err error) {
	var le *LookupError
	if errors.As(err, &le) && le.Transport {
		if ru.transport == nil {
			ru.transport = map[int]bool{}
		}
		ru.transport[len(ru.out)] = true
	}
	ru.add(newFail(what, "check the zone's name servers (SERVFAIL often means broken DNSSEC or a lame delegation) and re-run",
		"lookup failed: %v", err))
}

// domains returns in.Domains plus the DKIM domains, lower-cased and
// deduplicated, in first-seen order.
func domains(in Input) []string {
	seen := map[string]bool{}
	var out []string
	addOne := func(d string) {
		d = bare(d)
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, d := range in.Domains {
		addOne(d)
	}
	for _, k := range in.DKIM {
		addOne(k.Domain)
	}
	return out
}
