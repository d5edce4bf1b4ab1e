package smtpd

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

type countingResolver struct {
	mu        sync.Mutex
	calls     map[string]int
	names     map[string]string
	temporary map[string]int // this many temporary failures first
}

func (r *countingResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[addr]++
	if n, ok := r.names[addr]; ok {
		return []string{n}, nil
	}
	if r.temporary[addr] > 0 {
		r.temporary[addr]--
		return nil, &net.DNSError{Err: "server misbehaving", Name: addr, IsTemporary: true}
	}
	return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
}

func (r *countingResolver) count(addr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[addr]
}

// A name, or its absence, is looked up once per rdnsTTL per address; the
// cache is bounded.
func TestReverseCached(t *testing.T) {
	res := &countingResolver{names: map[string]string{"192.0.2.1": "mx.example.net."}}
	s := New(Config{Resolver: res}, nil)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	s.rdns.now = func() time.Time { return now }
	known, unknown := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range 3 {
		if got := s.reverse(known); got != "mx.example.net" {
			t.Fatalf("reverse(%v) = %q", known, got)
		}
		if got := s.reverse(unknown); got != "" {
			t.Fatalf("reverse(%v) = %q", unknown, got)
		}
	}
	if a, b := res.count("192.0.2.1"), res.count("192.0.2.2"); a != 1 || b != 1 {
		t.Fatalf("lookups %d and %d within the TTL, want 1 each", a, b)
	}
	now = now.Add(rdnsTTL)
	s.reverse(known)
	if n := res.count("192.0.2.1"); n != 2 {
		t.Errorf("%d lookups after the TTL, want 2", n)
	}
	for i := range rdnsMax + 10 {
		s.reverse(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
	}
	s.rdns.mu.Lock()
	n := len(s.rdns.m)
	s.rdns.mu.Unlock()
	if n > rdnsMax {
		t.Errorf("%d addresses remembered, bound is %d", n, rdnsMax)
	}
	if s.reverse(known); res.count("192.0.2.1") < 2 {
		t.Error("lookup count went down")
	}
}

// A temporary failure (timeout, SERVFAIL) is not remembered as "no name":
// the next connection asks again.
func TestReverseTemporaryFailureNotCached(t *testing.T) {
	res := &countingResolver{names: map[string]string{}, temporary: map[string]int{"192.0.2.9": 1}}
	s := New(Config{Resolver: res}, nil)
	ip := netip.MustParseAddr("192.0.2.9")
	if got := s.reverse(ip); got != "" {
		t.Fatalf("reverse during a failure = %q", got)
	}
	res.mu.Lock()
	res.names["192.0.2.9"] = "back.example.net."
	res.mu.Unlock()
	if got := s.reverse(ip); got != "back.example.net" {
		t.Errorf("after a temporary failure: %q after %d lookups, want the name from a new lookup", got, res.count("192.0.2.9"))
	}
}

// Without a resolver there is no name and no lookup.
func TestReverseNoResolver(t *testing.T) {
	s := New(Config{}, nil)
	if got := s.reverse(netip.MustParseAddr("127.0.0.1")); got != "" {
		t.Errorf("reverse without resolver = %q", got)
	}
}
