package upstream

import (
	"context"
	"net"
	"strings"
	"testing"

	"relayd/internal/defaults"
	"relayd/internal/smtptest"
	"relayd/internal/tlsmode"
)

// elsewhere dials the real server but reports a non-loopback peer, as if
// "localhost" had resolved to another host.
type elsewhere struct{ net.Dialer }

type farConn struct{ net.Conn }

func (farConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25} }

func (d *elsewhere) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return farConn{c}, nil
}

// tls = "none" checks the address actually dialled: nothing is sent in
// clear to a peer that is not on loopback.
func TestCleartextOnlyToLoopbackPeer(t *testing.T) {
	s := smtptest.New(t, smtptest.Options{})
	c, _ := newClient(t, s, func(cfg *Config) {
		cfg.TLS = tlsmode.None
		cfg.Username, cfg.Password = "", ""
		cfg.Dialer = &elsewhere{}
	})
	_, err := c.Deliver(context.Background(), delivery("m1", "bob@example.org"))
	e := wantErr(t, err, StageConnect)
	if !strings.Contains(e.Error(), "not a loopback address") {
		t.Errorf("error %q does not say why", e.Error())
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages sent in clear to a non-loopback peer", n)
	}
}

// TestCleartextConfigLoopback: upstream's rule for tls = "none" is conf's
// (internal/loopback): they disagreed on "LOCALHOST" before.
func TestCleartextConfigLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"localhost:25": true, "LOCALHOST:25": true, "127.0.0.2:25": true, "[::1]:25": true,
		"[::ffff:127.0.0.1]:25": true, "smtp.isp.example:25": false, "[::ffff:192.0.2.1]:25": false,
	} {
		_, err := Config{Address: addr, TLS: tlsmode.None}.normalize()
		if (err == nil) != ok {
			t.Errorf("%s: normalize error %v, want accepted=%v", addr, err, ok)
		}
	}
}

// A Config used directly gets the values conf fills in (internal/defaults).
func TestNormalizeDefaultsAreConfs(t *testing.T) {
	c, err := Config{Address: "smtp.example.com:587"}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != defaults.UpstreamTimeout || c.MinBackoff != defaults.MinBackoff ||
		c.MaxBackoff != defaults.MaxBackoff || c.MaxConns != defaults.Concurrency {
		t.Errorf("normalize: %v %v %v %d", c.Timeout, c.MinBackoff, c.MaxBackoff, c.MaxConns)
	}
}
