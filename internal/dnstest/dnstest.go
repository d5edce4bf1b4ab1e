// Package dnstest is a real DNS server for tests: miekg/dns on 127.0.0.1
// (UDP and TCP on one port) serving a fixed zone the way a recursive
// resolver would answer for it.
//
// Invariants:
//   - It listens on loopback only and is shut down by t.Cleanup.
//   - CNAMEs inside the zone are followed (up to 8 hops) and included in the
//     answer; a name with no records in the zone is NXDOMAIN; a name with
//     records but none of the asked type is NODATA (NOERROR, empty answer).
//   - UDP answers larger than the client's EDNS(0) buffer (or UDPLimit) are
//     truncated with TC set, so clients must retry over TCP (RFC 7766 §5).
//   - No package-level mutable state: every Server is independent.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Zone is a test zone: owner name -> records in zone-file syntax (full
// lines, each owned by that name).
type Zone map[string][]string

// Clone returns a deep copy of z, for tests that alter one record.
func (z Zone) Clone() Zone {
	c := Zone{}
	for k, v := range z {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// Server is a running DNS server. Set UDPLimit and Drop only through the
// options of Start (before it serves).
type Server struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr string
	// UDPLimit, if > 0, truncates UDP answers at this size regardless of
	// EDNS(0).
	UDPLimit int
	// Drop, if it returns true, leaves the query unanswered (a dead or
	// filtering resolver).
	Drop func(q dns.Question) bool
	// Refuse, if it returns true, answers REFUSED, as an authoritative-only
	// server does for a name outside its zones.
	Refuse func(q dns.Question) bool

	records map[string][]dns.RR
	udpQ    atomic.Int32
	tcpQ    atomic.Int32
}

// UDPQueries is the number of queries received over UDP so far.
func (s *Server) UDPQueries() int { return int(s.udpQ.Load()) }

// TCPQueries is the number of queries received over TCP so far.
func (s *Server) TCPQueries() int { return int(s.tcpQ.Load()) }

// Start serves z; opts adjust the server before it starts. A record that
// does not parse or is not owned by its key fails the test.
func Start(t testing.TB, z Zone, opts ...func(*Server)) *Server {
	t.Helper()
	s := &Server{records: map[string][]dns.RR{}}
	for _, o := range opts {
		o(s)
	}
	for owner, lines := range z {
		name := dns.CanonicalName(owner)
		for _, l := range lines {
			rr, err := dns.NewRR(l)
			if err != nil {
				t.Fatalf("dnstest: bad record %q: %v", l, err)
			}
			if !strings.EqualFold(rr.Header().Name, name) {
				t.Fatalf("dnstest: record %q is not owned by %s", l, owner)
			}
			s.records[name] = append(s.records[name], rr)
		}
	}
	pc, ln := listenPair(t)
	s.Addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	servers := []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: wg.Done},
		{Listener: ln, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: wg.Done},
	}
	for _, srv := range servers {
		go func() { _ = srv.ActivateAndServe() }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
	})
	return s
}

// listenPair binds UDP and TCP on the same ephemeral loopback port.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("dnstest: no free UDP+TCP port pair: %v", err)
		}
	}
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if udp {
		s.udpQ.Add(1)
	} else {
		s.tcpQ.Add(1)
	}
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if s.Drop != nil && s.Drop(q) {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	if s.Refuse != nil && s.Refuse(q) {
		m.SetRcode(req, dns.RcodeRefused)
		_ = w.WriteMsg(m)
		return
	}
	m.RecursionAvailable = true
	s.answer(m, q)
	if udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
			m.SetEdns0(o.UDPSize(), false)
		}
		if s.UDPLimit > 0 {
			size = s.UDPLimit
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer fills m for q, following CNAMEs inside the zone (RFC 1034 §4.3.2).
func (s *Server) answer(m *dns.Msg, q dns.Question) {
	name := dns.CanonicalName(q.Name)
	if _, ok := s.records[name]; !ok {
		m.Rcode = dns.RcodeNameError
		return
	}
	for hops := 0; hops < 8; hops++ {
		rrs := s.records[name]
		var cname *dns.CNAME
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
				cname = c
			}
		}
		if cname == nil {
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
			return
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = dns.CanonicalName(cname.Target)
		if _, ok := s.records[name]; !ok {
			m.Rcode = dns.RcodeNameError
			return
		}
	}
}
