package smtpd

import (
	"bufio"
	"net"
	"net/netip"
	"testing"
)

// listen.max_connections is overall: two servers (say port 25 and 587)
// sharing ConnLimits share one budget.
func TestConnLimitsSharedAcrossListeners(t *testing.T) {
	lim := NewConnLimits(2, 10)
	a := serve(t, Relay, func(c *Config) { c.Limits = lim })
	b := serve(t, Relay, func(c *Config) { c.Limits = lim })
	greet := func(addr string) int {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		n, _ := readReply(t, conn, bufio.NewReader(conn))
		return n
	}
	if greet(a.addr) != 220 || greet(b.addr) != 220 {
		t.Fatal("first two connections refused")
	}
	if n := greet(a.addr); n != 421 {
		t.Errorf("third connection over both listeners: %d, want 421", n)
	}
}

// On the sendmail socket a client is a uid: one uid's connections do not
// use up another's.
func TestConnLimitsPerUID(t *testing.T) {
	lim := NewConnLimits(0, 2)
	mallory, root := client{uid: 65534}, client{uid: 0}
	for i := 0; i < 2; i++ {
		if r := lim.acquire(mallory); r != "" {
			t.Fatalf("mallory %d: %s", i, r)
		}
	}
	if r := lim.acquire(mallory); r != "Too many connections from uid 65534" {
		t.Errorf("mallory's third: %q", r)
	}
	if r := lim.acquire(root); r != "" {
		t.Errorf("root refused because of mallory: %s", r)
	}
	lim.release(mallory)
	if r := lim.acquire(mallory); r != "" {
		t.Errorf("mallory after a release: %s", r)
	}
	ip := client{ip: netip.MustParseAddr("192.0.2.1"), uid: -1}
	if r := lim.acquire(ip); r != "" {
		t.Errorf("an IP: %s", r)
	}
}
