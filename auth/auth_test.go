package auth

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"relayd/conf"
)

func TestAuthenticate(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	var slept []time.Duration
	a := New([]conf.User{{Name: "app1", PasswordHash: string(hash), Senders: []string{"*@Example.com"}}},
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
		a.recordFailure(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	now = now.Add(2 * time.Hour)
	a.recordFailure(netip.MustParseAddr("192.0.2.9"))
	if n := len(a.fail); n != 1 {
		t.Errorf("failure table has %d entries after the window passed, want 1", n)
	}
}
