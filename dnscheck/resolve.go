package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// ednsSize is the EDNS(0) UDP payload we advertise (RFC 6891); 1232 avoids
// IP fragmentation (DNS flag day 2020). Larger answers come back truncated
// and are retried over TCP.
const ednsSize = 1232

// LookupError is a query that got no usable answer: the resolver did not
// answer (Transport true) or answered with SERVFAIL, REFUSED or similar.
type LookupError struct {
	Name      string
	Type      string
	Rcode     string // "" when the resolver did not answer
	Transport bool
	Err       error
}

func (e *LookupError) Error() string {
	if e.Transport {
		return fmt.Sprintf("%s %s: no answer: %v", e.Type, e.Name, e.Err)
	}
	return fmt.Sprintf("%s %s: %s", e.Type, e.Name, e.Rcode)
}

func (e *LookupError) Unwrap() error { return e.Err }

// resolver sends queries for one Run and caches their answers.
type resolver struct {
	server string
	udp    *dns.Client
	tcp    *dns.Client

	mu    sync.Mutex
	cache map[cacheKey]*dns.Msg
	dead  error // first transport failure; later queries fail at once
}

type cacheKey struct {
	name  string
	qtype uint16
}

func newResolver(server string, udp *dns.Client) *resolver {
	tcp := *udp
	tcp.Net = "tcp"
	return &resolver{server: server, udp: udp, tcp: &tcp, cache: map[cacheKey]*dns.Msg{}}
}

// query returns the answer for name/qtype. NOERROR and NXDOMAIN are answers;
// any other rcode or a transport failure is a *LookupError.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	name = dns.CanonicalName(name)
	key := cacheKey{name, qtype}
	r.mu.Lock()
	m, cached := r.cache[key]
	dead := r.dead
	r.mu.Unlock()
	if cached {
		return m, nil
	}
	if dead != nil {
		return nil, &LookupError{Name: name, Type: dns.TypeToString[qtype], Transport: true, Err: dead}
	}

	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)
	m, err := r.exchange(ctx, q)
	if err != nil && ctx.Err() == nil {
		m, err = r.exchange(ctx, q) // one retry: UDP may lose a packet
	}
	if err != nil {
		r.mu.Lock()
		if r.dead == nil {
			r.dead = err
		}
		r.mu.Unlock()
		return nil, &LookupError{Name: name, Type: dns.TypeToString[qtype], Transport: true, Err: err}
	}
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return nil, &LookupError{Name: name, Type: dns.TypeToString[qtype], Rcode: dns.RcodeToString[m.Rcode]}
	}
	r.mu.Lock()
	r.cache[key] = m
	r.mu.Unlock()
	return m, nil
}

// exchange sends q over UDP and repeats it over TCP when the answer is
// truncated (RFC 7766 §5).
func (r *resolver) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	m, _, err := r.udp.ExchangeContext(ctx, q, r.server)
	if err == nil && m.Truncated && r.udp.Net != "tcp" {
		m, _, err = r.tcp.ExchangeContext(ctx, q, r.server)
	}
	return m, err
}

// deadErr returns the transport failure that stopped the resolver, if any.
func (r *resolver) deadErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dead
}

// txt returns the TXT records at name, each one's strings joined without
// separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2). NXDOMAIN and NODATA give nil.
func (r *resolver) txt(ctx context.Context, name string) ([]string, error) {
	m, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range m.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// addrResult is what an A+AAAA lookup of a host name found.
type addrResult struct {
	Addrs []netip.Addr
	CNAME string // the CNAME target when name is an alias, else ""
}

// addrs looks up A and AAAA for name, noting whether name is a CNAME.
func (r *resolver) addrs(ctx context.Context, name string) (addrResult, error) {
	var res addrResult
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m, err := r.query(ctx, name, qt)
		if err != nil {
			return res, err
		}
		for _, rr := range m.Answer {
			switch v := rr.(type) {
			case *dns.CNAME:
				if sameName(v.Hdr.Name, name) && res.CNAME == "" {
					res.CNAME = strings.TrimSuffix(v.Target, ".")
				}
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					res.Addrs = appendUnique(res.Addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
					res.Addrs = appendUnique(res.Addrs, a)
				}
			}
		}
	}
	return res, nil
}

// mx returns the MX records at name (nil for NXDOMAIN/NODATA).
func (r *resolver) mx(ctx context.Context, name string) ([]*dns.MX, error) {
	m, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*dns.MX
	for _, rr := range m.Answer {
		if v, ok := rr.(*dns.MX); ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// ptr returns the PTR names of ip, without trailing dots.
func (r *resolver) ptr(ctx context.Context, ip netip.Addr) ([]string, error) {
	arpa, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("dnscheck: reverse name of %s: %w", ip, err)
	}
	m, err := r.query(ctx, arpa, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range m.Answer {
		if v, ok := rr.(*dns.PTR); ok {
			out = append(out, strings.TrimSuffix(v.Ptr, "."))
		}
	}
	return out, nil
}

// probe asks for the root zone's SOA, which every recursive resolver can
// answer. Any answer other than SERVFAIL/REFUSED proves the resolver works.
func (r *resolver) probe(ctx context.Context) error {
	_, err := r.query(ctx, ".", dns.TypeSOA)
	return err
}

// SystemResolver returns the first nameserver of /etc/resolv.conf as
// host:port.
func SystemResolver() (string, error) {
	return resolverFromFile("/etc/resolv.conf")
}

func resolverFromFile(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("dnscheck: reading %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("dnscheck: %s: %w", path, errNoNameserver)
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	return net.JoinHostPort(cc.Servers[0], port), nil
}

var errNoNameserver = errors.New("no nameserver line")

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

func appendUnique(s []netip.Addr, a netip.Addr) []netip.Addr {
	for _, x := range s {
		if x == a {
			return s
		}
	}
	return append(s, a)
}
