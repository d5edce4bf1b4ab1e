package dnscheck

import (
	"testing"

	"relayd/internal/dnstest"
)

// zone and testServer are the loopback DNS server of internal/dnstest,
// shared with cmd/relayd's `relayd check` tests.
type (
	zone       = dnstest.Zone
	testServer = dnstest.Server
)

// startServer serves z on 127.0.0.1; opts adjust the server before it starts.
func startServer(t *testing.T, z zone, opts ...func(*testServer)) *testServer {
	t.Helper()
	return dnstest.Start(t, z, opts...)
}
