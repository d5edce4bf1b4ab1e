package conf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day is the "d" unit accepted in durations.
const Day = 24 * time.Hour

// ParseDuration parses a Go duration ("90s", "15m", "1h30m") that may also
// use the unit "d" (24h), as in "5d" or "1d12h". "0" is zero; an empty or
// negative duration is an error.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration (use s, m, h or d, e.g. \"5d\")", s)
	switch {
	case s == "0":
		return 0, nil
	case s == "":
		return 0, bad
	case s[0] == '-':
		return 0, fmt.Errorf("%q is negative: durations must be zero or more", s)
	}
	var total time.Duration
	for rest := s; rest != ""; {
		n := strings.IndexFunc(rest, func(r rune) bool { return !isNumRune(r) })
		if n == 0 {
			return 0, bad
		}
		if n < 0 { // a number without a unit
			return 0, bad
		}
		u := strings.IndexFunc(rest[n:], isNumRune)
		if u < 0 {
			u = len(rest) - n
		}
		num, unit := rest[:n], rest[n:n+u]
		rest = rest[n+u:]
		var d time.Duration
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, bad
			}
			ns := f * float64(Day)
			if ns >= math.MaxInt64 {
				return 0, fmt.Errorf("%q is too long", s)
			}
			d = time.Duration(ns)
		} else {
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, bad
			}
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("%q is too long", s)
		}
		total += d
	}
	return total, nil
}

func isNumRune(r rune) bool { return r == '.' || ('0' <= r && r <= '9') }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler; the text round-trips
// through UnmarshalText ("5d", "1d12h", "1h30m", "0s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String formats d with the "d" unit, e.g. "5d", "1d12h", "90s" as "1m30s".
func (d Duration) String() string {
	v := d.Duration
	if v <= 0 {
		if v == 0 {
			return "0s"
		}
		return v.String()
	}
	var b strings.Builder
	if days := v / Day; days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		v -= days * Day
	}
	if v == 0 {
		return b.String()
	}
	if v%time.Second != 0 {
		b.WriteString(v.String())
		return b.String()
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := v / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			v -= n * u.unit
		}
	}
	return b.String()
}
