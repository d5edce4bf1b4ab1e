package loopback

import "testing"

func TestHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost":         true,
		"LOCALHOST":         true,
		"LocalHost":         true,
		"127.0.0.1":         true,
		"127.1.2.3":         true,
		"127.255.255.255":   true,
		"::1":               true,
		"0:0:0:0:0:0:0:1":   true,
		"::ffff:127.0.0.1":  true,
		"::ffff:7f00:1":     true,
		"::1%lo":            true,
		"128.0.0.1":         false,
		"10.0.0.1":          false,
		"::":                false,
		"::2":               false,
		"::ffff:10.0.0.1":   false,
		"0.0.0.0":           false,
		"localhost.":        false, // a name to resolve, not the reserved one
		"localhost.example": false,
		"mylocalhost":       false,
		"[::1]":             false, // brackets are the caller's to strip
		"":                  false,
		"smtp.example.com":  false,
	} {
		if got := Host(host); got != want {
			t.Errorf("Host(%q) = %v, want %v", host, got, want)
		}
	}
}
