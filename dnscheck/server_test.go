package dnscheck

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// zone is a test zone: owner name -> RRs in zone-file syntax (full lines).
type zone map[string][]string

func (z zone) clone() zone {
	c := zone{}
	for k, v := range z {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// testServer is a real DNS server on 127.0.0.1 (UDP and TCP on one port)
// that serves a zone like a recursive resolver would: it follows CNAMEs
// inside the zone, answers NXDOMAIN for unknown names and truncates UDP
// answers that exceed the client's buffer.
type testServer struct {
	addr     string
	records  map[string][]dns.RR
	udpLimit int // if > 0, truncate UDP answers at this size regardless of EDNS
	udpQ     atomic.Int32
	tcpQ     atomic.Int32
	drop     func(q dns.Question) bool // if it returns true, the query gets no answer
}

// startServer serves z; opts adjust the server before it starts.
func startServer(t *testing.T, z zone, opts ...func(*testServer)) *testServer {
	t.Helper()
	ts := &testServer{records: map[string][]dns.RR{}}
	for _, o := range opts {
		o(ts)
	}
	for owner, lines := range z {
		for _, l := range lines {
			rr, err := dns.NewRR(l)
			if err != nil {
				t.Fatalf("bad test record %q: %v", l, err)
			}
			name := dns.CanonicalName(owner)
			if !strings.EqualFold(rr.Header().Name, name) {
				t.Fatalf("record %q is not owned by %s", l, owner)
			}
			ts.records[name] = append(ts.records[name], rr)
		}
	}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("no free UDP+TCP port pair: %v", err)
		}
	}
	ts.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	servers := []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(ts.serve), NotifyStartedFunc: wg.Done},
		{Listener: ln, Handler: dns.HandlerFunc(ts.serve), NotifyStartedFunc: wg.Done},
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	})
	return ts
}

func (ts *testServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if udp {
		ts.udpQ.Add(1)
	} else {
		ts.tcpQ.Add(1)
	}
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if ts.drop != nil && ts.drop(q) {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	name := dns.CanonicalName(q.Name)
	if _, ok := ts.records[name]; !ok {
		m.Rcode = dns.RcodeNameError
	}
	for hops := 0; hops < 8; hops++ {
		rrs := ts.records[name]
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
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = dns.CanonicalName(cname.Target)
		if _, ok := ts.records[name]; !ok {
			m.Rcode = dns.RcodeNameError
			break
		}
	}
	if udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
			m.SetEdns0(o.UDPSize(), false)
		}
		if ts.udpLimit > 0 {
			size = ts.udpLimit
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}
