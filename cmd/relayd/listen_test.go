package main

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// Connections accepted on an SMTP listener have SO_KEEPALIVE off (the idle
// deadline does that job); Go would otherwise turn it on for each one.
func TestListenSMTPNoKeepalive(t *testing.T) {
	for _, c := range []struct {
		name   string
		listen func(string) (net.Listener, error)
		want   int
	}{
		{"listenSMTP", listenSMTP, 0},
		{"net.Listen", func(a string) (net.Listener, error) { return net.Listen("tcp", a) }, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := c.listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cc, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			sc, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			raw, err := sc.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var v int
			var gerr error
			if err := raw.Control(func(fd uintptr) {
				v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			}); err != nil || gerr != nil {
				t.Fatal(err, gerr)
			}
			if (v != 0) != (c.want != 0) {
				t.Errorf("SO_KEEPALIVE = %d, want %d", v, c.want)
			}
		})
	}
}
