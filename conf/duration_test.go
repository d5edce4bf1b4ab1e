package conf

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0":      0,
		"0s":     0,
		"90s":    90 * time.Second,
		"15m":    15 * time.Minute,
		"4h":     4 * time.Hour,
		"1h30m":  90 * time.Minute,
		"5d":     5 * 24 * time.Hour,
		"1d12h":  36 * time.Hour,
		"1.5d":   36 * time.Hour,
		"2d30m":  48*time.Hour + 30*time.Minute,
		"500ms":  500 * time.Millisecond,
		"1h1d":   25 * time.Hour,
		"10d10s": 240*time.Hour + 10*time.Second,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "5x", "d", "-5m", "-1d", "5 d", "1e3d", "1.2.3d", "99999999d", "5dd", "m5"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestDurationText(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		text string
	}{
		{0, "0s"},
		{90 * time.Second, "1m30s"},
		{5 * Day, "5d"},
		{36 * time.Hour, "1d12h"},
		{time.Hour + 30*time.Minute, "1h30m"},
		{Day + 1500*time.Millisecond, "1d1.5s"},
	} {
		b, err := Duration{c.d}.MarshalText()
		if err != nil || string(b) != c.text {
			t.Errorf("MarshalText(%v) = %q, %v; want %q", c.d, b, err, c.text)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back.Duration != c.d {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back.Duration, err, c.d)
		}
	}
	var d Duration
	err := d.UnmarshalText([]byte("5x"))
	if err == nil || err.Error() != `"5x" is not a duration (use s, m, h or d, e.g. "5d")` {
		t.Errorf("UnmarshalText(5x) error = %v", err)
	}
}
