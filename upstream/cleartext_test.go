package upstream

import (
	"context"
	"net"
	"strings"
	"testing"

	"relayd/internal/smtptest"
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
		cfg.TLS = TLSNone
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
