package auth

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestAuthenticate(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	var slept []time.Duration
	a := New([]User{{Name: "app1", PasswordHash: string(hash), Senders: []string{"*@Example.com"}}},
		Options{MaxFailures: 3, Sleep: func(d time.Duration) { slept = append(slept, d) }})
	ip := netip.MustParseAddr("192.0.2.7")
	if err := a.Authenticate(ip, "app1", "right"); err != nil {
		t.Fatalf("good password: %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := a.Authenticate(ip, "app1", "wrong"); err != ErrAuthFailed {
			t.Fatalf("bad password %d: %v", i, err)
		}
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; len(slept) != 3 || slept[0] != want[0] || slept[1] != want[1] || slept[2] != want[2] {
		t.Errorf("delays %v, want %v", slept, want)
	}
	if err := a.Authenticate(ip, "app1", "right"); err != ErrTooManyFailures {
		t.Errorf("blocked IP with the right password: %v", err)
	}
	if err := a.Authenticate(netip.MustParseAddr("192.0.2.8"), "nobody", "right"); err != ErrAuthFailed {
		t.Errorf("unknown user: %v", err)
	}
	if !a.MaySend("app1", "x@example.COM") || a.MaySend("app1", "x@other.com") || a.MaySend("ghost", "x@example.com") {
		t.Errorf("MaySend wrong")
	}
}

// Old failures are swept, so the table does not grow with every address
// that ever failed.
func TestFailureTableSwept(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	a := New(nil, Options{Clock: func() time.Time { return now }, Sleep: func(time.Duration) {}})
	for i := 0; i < sweepAt; i++ {
		a.reserve(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "u")
	}
	now = now.Add(2 * time.Hour)
	a.reserve(netip.MustParseAddr("192.0.2.9"), "u")
	if n := len(a.fail); n != 1 {
		t.Errorf("failure table has %d entries after the window passed, want 1", n)
	}
}

func hashAt(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// Another account's success does not reset the IP's count; the user's own
// success forgives only the user's own failures.
func TestSuccessForgivesOnlyOwnFailures(t *testing.T) {
	a := New([]User{{Name: "alice", PasswordHash: hashAt(t, "a", bcrypt.MinCost)}, {Name: "bob", PasswordHash: hashAt(t, "b", bcrypt.MinCost)}},
		Options{MaxFailures: 10, Sleep: func(time.Duration) {}})
	ip := netip.MustParseAddr("192.0.2.7")
	fails := 0
	for round := 0; round < 6; round++ {
		for i := 0; i < 3; i++ {
			switch err := a.Authenticate(ip, "bob", "guess"); err {
			case ErrAuthFailed:
				fails++
			case ErrTooManyFailures:
			default:
				t.Fatalf("bob: %v", err)
			}
		}
		a.Authenticate(ip, "alice", "a")
	}
	if fails != 10 {
		t.Errorf("%d guesses evaluated for bob between alice's logins, want 10", fails)
	}
	// alice's own typos are forgiven by her success.
	b := New([]User{{Name: "alice", PasswordHash: hashAt(t, "a", bcrypt.MinCost)}}, Options{MaxFailures: 3, Sleep: func(time.Duration) {}})
	for round := 0; round < 5; round++ {
		if err := b.Authenticate(ip, "alice", "typo"); err != ErrAuthFailed {
			t.Fatalf("typo %d: %v", round, err)
		}
		if err := b.Authenticate(ip, "alice", "a"); err != nil {
			t.Fatalf("alice after a typo, round %d: %v", round, err)
		}
	}
}

// Failures for one username are counted across IPs; IPv6 clients are
// counted by /64.
func TestPerUserAndPrefixBudget(t *testing.T) {
	a := New([]User{{Name: "bob", PasswordHash: hashAt(t, "b", bcrypt.MinCost)}}, Options{MaxFailures: 2, MaxUserFailures: 4, Sleep: func(time.Duration) {}})
	for i := 0; i < 4; i++ {
		if err := a.Authenticate(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), "bob", "x"); err != ErrAuthFailed {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if err := a.Authenticate(netip.MustParseAddr("198.51.100.1"), "bob", "b"); err != ErrTooManyFailures {
		t.Errorf("bob over his budget from a fresh IP: %v", err)
	}
	for i := 1; i <= 3; i++ {
		err := a.Authenticate(netip.MustParseAddr("2001:db8::"+string(rune('0'+i))), "carol", "x")
		if want := map[bool]error{true: ErrAuthFailed, false: ErrTooManyFailures}[i <= 2]; err != want {
			t.Errorf("IPv6 attempt %d from one /64: %v, want %v", i, err, want)
		}
	}
}

// Concurrent attempts cannot overrun the budget: the attempt is reserved
// before bcrypt runs.
func TestConcurrentAttemptsReserved(t *testing.T) {
	a := New([]User{{Name: "bob", PasswordHash: hashAt(t, "b", bcrypt.MinCost)}}, Options{MaxFailures: 10, Sleep: func(time.Duration) {}})
	ip := netip.MustParseAddr("192.0.2.7")
	var mu sync.Mutex
	counts := map[error]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := a.Authenticate(ip, "bob", "x")
			mu.Lock()
			counts[err]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if counts[ErrAuthFailed] != 10 || counts[ErrTooManyFailures] != 30 {
		t.Errorf("40 concurrent attempts: %d evaluated, %d refused; want 10 and 30", counts[ErrAuthFailed], counts[ErrTooManyFailures])
	}
}

// The dummy hash for unknown names has the highest configured cost, not
// the last user's.
func TestDummyHashHighestCost(t *testing.T) {
	a := New([]User{{Name: "slow", PasswordHash: hashAt(t, "s", bcrypt.MinCost+2)}, {Name: "fast", PasswordHash: hashAt(t, "f", bcrypt.MinCost)}}, Options{})
	if c, err := bcrypt.Cost(a.dummy); err != nil || c != bcrypt.MinCost+2 {
		t.Errorf("dummy cost %d (%v), want %d", c, err, bcrypt.MinCost+2)
	}
}

// Flooding a username from elsewhere does not lock that user out of an
// address it logged in from.
func TestPerUserBudgetSparesKnownAddress(t *testing.T) {
	a := New([]User{{Name: "app1", PasswordHash: hashAt(t, "pw", bcrypt.MinCost)}}, Options{MaxFailures: 2, MaxUserFailures: 4, Sleep: func(time.Duration) {}})
	home := netip.MustParseAddr("192.168.1.10")
	if err := a.Authenticate(home, "app1", "pw"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		a.Authenticate(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "app1", "guess")
	}
	if err := a.Authenticate(netip.MustParseAddr("198.51.100.7"), "app1", "pw"); err != ErrTooManyFailures {
		t.Errorf("a new address after the flood: %v, want 421", err)
	}
	if err := a.Authenticate(home, "app1", "pw"); err != nil {
		t.Errorf("the application's own address after the flood: %v", err)
	}
}
