package dnscheck

import "time"

// MaxClockSkew is the largest clock difference CheckClock accepts. DKIM
// signatures carry the signing time (RFC 6376 §3.5 t=) and queue expiry,
// Date headers and TLS certificate checks all assume a correct clock.
const MaxClockSkew = 60 * time.Second

// CheckClock compares the local clock with a trusted remote time (for
// example the Date of the smarthost's reply or an HTTP Date header).
func CheckClock(local, remote time.Time) Finding {
	skew := local.Sub(remote)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	if abs > MaxClockSkew {
		dir := "ahead of"
		if skew < 0 {
			dir = "behind"
		}
		return newWarn("clock", "enable time synchronisation: timedatectl set-ntp true (and check systemd-timesyncd or chrony is running)",
			"local clock is %s %s the remote clock (more than %s)", abs.Round(time.Second), dir, MaxClockSkew)
	}
	return newOK("clock", "local clock is within %s of the remote clock", abs.Round(time.Second))
}
