package dnscheck

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestUnreachableResolverGivesOneFail(t *testing.T) {
	// A port nobody listens on: the kernel answers with ICMP port
	// unreachable, which a connected UDP socket reports as refused.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()

	// A socket that reads queries and never answers: the client times out.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for _, addr := range []string{closed, silent.LocalAddr().String()} {
		c := &Checker{Resolver: addr, Timeout: 300 * time.Millisecond}
		fs := c.Run(context.Background(), goodInput(t))
		if len(fs) != 1 {
			t.Fatalf("%s: %d findings, want exactly 1:\n%s", addr, len(fs), dump(fs))
		}
		f := fs[0]
		if f.Level != Fail || f.What != "resolver" || !strings.Contains(f.Finding, "resolver "+addr+" did not answer") ||
			!strings.Contains(f.Fix, "--resolver") || !strings.Contains(f.Fix, "/etc/resolv.conf") {
			t.Errorf("%s: unclear finding: %s", addr, f)
		}
	}
}

func TestResolverDyingMidRunGivesOneResolverFail(t *testing.T) {
	// Answer the probe, then nothing else.
	ts := startServer(t, goodZone(t), func(ts *testServer) {
		ts.Drop = func(q dns.Question) bool { return q.Name != "." }
	})
	c := &Checker{Resolver: ts.Addr, Timeout: 200 * time.Millisecond}
	fs := c.Run(context.Background(), goodInput(t))
	if len(fs) != 1 || fs[0].Level != Fail || fs[0].What != "resolver" {
		t.Fatalf("want one resolver FAIL, got:\n%s", dump(fs))
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	long := strings.Repeat("x", 250)
	var strs []string
	for i := 0; i < 12; i++ {
		strs = append(strs, `"`+long+`"`)
	}
	ts := startServer(t, zone{"big.example.com": {"big.example.com. 60 IN TXT " + strings.Join(strs, " ")}})
	r := newResolver(ts.Addr, &dns.Client{Net: "udp", Timeout: 2 * time.Second})
	txts, err := r.txt(context.Background(), "big.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(txts) != 1 || len(txts[0]) != 3000 {
		t.Fatalf("got %d records, first %d bytes; want one of 3000", len(txts), len(txts[0]))
	}
	if ts.UDPQueries() != 1 || ts.TCPQueries() != 1 {
		t.Fatalf("udp %d tcp %d queries, want 1 and 1", ts.UDPQueries(), ts.TCPQueries())
	}
	// Cached: no second query.
	if _, err := r.txt(context.Background(), "BIG.example.com."); err != nil || ts.UDPQueries() != 1 {
		t.Fatalf("second lookup not cached: %v, %d udp queries", err, ts.UDPQueries())
	}
}

func TestNXDomainIsNotAnError(t *testing.T) {
	ts := startServer(t, zone{"a.example.com": {"a.example.com. 60 IN A 192.0.2.1"}})
	r := newResolver(ts.Addr, &dns.Client{Net: "udp", Timeout: 2 * time.Second})
	txts, err := r.txt(context.Background(), "nothing.example.com")
	if err != nil || txts != nil {
		t.Fatalf("NXDOMAIN: %v, %v", txts, err)
	}
	ar, err := r.addrs(context.Background(), "a.example.com")
	if err != nil || len(ar.Addrs) != 1 || ar.CNAME != "" {
		t.Fatalf("A lookup: %+v, %v", ar, err)
	}
}

func TestServfailIsLookupError(t *testing.T) {
	srv := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
	})}
	pc, lerr := net.ListenPacket("udp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	srv.PacketConn = pc
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	defer srv.Shutdown()
	r := newResolver(pc.LocalAddr().String(), &dns.Client{Net: "udp", Timeout: 2 * time.Second})
	_, err := r.txt(context.Background(), "example.com")
	le, ok := err.(*LookupError)
	if !ok || le.Transport || le.Rcode != "SERVFAIL" {
		t.Fatalf("want SERVFAIL LookupError, got %#v", err)
	}
	c := &Checker{Resolver: pc.LocalAddr().String(), Timeout: time.Second}
	fs := c.Run(context.Background(), goodInput(t))
	if len(fs) != 1 || fs[0].What != "resolver" {
		t.Fatalf("a resolver that SERVFAILs the root must give one FAIL:\n%s", dump(fs))
	}
}

func TestSystemResolverFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := resolverFromFile(write("v4", "# comment\nsearch example.com\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n"))
	if err != nil || got != "10.0.0.53:53" {
		t.Errorf("v4: %q, %v", got, err)
	}
	got, err = resolverFromFile(write("v6", "nameserver ::1\n"))
	if err != nil || got != "[::1]:53" {
		t.Errorf("v6: %q, %v", got, err)
	}
	if _, err = resolverFromFile(write("none", "search example.com\n")); err == nil {
		t.Error("no nameserver: want an error")
	}
	if _, err = resolverFromFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: want an error")
	}
}
