package conf

import (
	"strings"
	"testing"
)

// A relay network of /0 would make relayd an open relay: refused.
func TestRelayNetworksRefuseEverything(t *testing.T) {
	for _, n := range []string{"0.0.0.0/0", "::/0"} {
		errs := parseErrs(t, testEnv(nil), "[listen]\nrelay_networks = [\"127.0.0.1/32\", \""+n+"\"]\n")
		if len(errs) != 1 || !strings.Contains(errs[0], "listen.relay_networks[1]") || !strings.Contains(errs[0], "open relay") {
			t.Errorf("%s: %q", n, errs)
		}
	}
}
