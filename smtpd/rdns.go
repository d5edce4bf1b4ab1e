package smtpd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Reverse DNS for the Received field (RFC 5321 §4.4: the name the client's
// address resolves to, next to the address itself).
//
// Answers, including "no name" (NXDOMAIN, no PTR), are remembered for rdnsTTL: a client that
// opens a connection per message (cron, scripts, PHP mail()) would
// otherwise cost a lookup each time, a DNS query for a LAN client when the
// host runs no caching resolver. At most rdnsMax addresses are remembered;
// beyond that the cache starts over.
const (
	rdnsTTL     = time.Minute
	rdnsMax     = 1024
	rdnsTimeout = 3 * time.Second
)

type rdnsCache struct {
	mu  sync.Mutex
	m   map[netip.Addr]rdnsEntry
	now func() time.Time // tests inject a clock
}

type rdnsEntry struct {
	name string
	at   time.Time
}

// reverse returns the name ip's PTR record gives (not forward-confirmed:
// it only annotates the Received field, the address is always there), or
// "" when there is none or no resolver.
func (s *Server) reverse(ip netip.Addr) string {
	r := s.cfg.Resolver
	if r == nil {
		return ""
	}
	c := &s.rdns
	c.mu.Lock()
	now := c.now()
	if e, ok := c.m[ip]; ok && now.Sub(e.at) < rdnsTTL && !now.Before(e.at) {
		c.mu.Unlock()
		return e.name
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), rdnsTimeout)
	defer cancel()
	name := ""
	names, err := r.LookupAddr(ctx, ip.String())
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(names) > 0:
		name = strings.TrimSuffix(names[0], ".")
	case err == nil, errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No name: remembered too.
	default:
		// A timeout or a failing server says nothing about the name:
		// not remembered, the next connection asks again.
		return ""
	}

	c.mu.Lock()
	if c.m == nil || len(c.m) >= rdnsMax {
		c.m = make(map[netip.Addr]rdnsEntry)
	}
	c.m[ip] = rdnsEntry{name: name, at: now}
	c.mu.Unlock()
	return name
}
