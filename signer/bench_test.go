package signer

import (
	"strings"
	"testing"
)

func BenchmarkSign(b *testing.B) {
	msg := crlf(baseMsg + strings.Repeat("A line of body text that is about seventy characters long, ok.\n", 60))
	msg = msg[:min(len(msg), 4096)]
	for _, c := range []struct{ name, file string }{
		{"rsa-2048", "rsa2048.pkcs8.pem"},
		{"ed25519", "ed25519.pem"},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := mustLoad(b, entry{"example.com", "s", c.file})
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				w, finish, err := s.Sign("example.com")
				if err != nil {
					b.Fatal(err)
				}
				w.Write(msg)
				if _, err := finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
