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

// Client commands load the config without the smarthost password, which
// under systemd exists only inside the service.
func TestLoadClientNeedsNoSecret(t *testing.T) {
	src := "[upstream]\naddress = \"smtp.example.net:587\"\nusername = \"me\"\n"
	if errs := parseErrs(t, testEnv(nil), src); len(errs) != 1 || !strings.Contains(errs[0], "no password") {
		t.Fatalf("the daemon's load must require the password: %q", errs)
	}
	e := testEnv(nil)
	e.noSecrets = true
	c, err := e.parse([]byte(src), "/etc/relayd/relayd.toml")
	if err != nil || c.Upstream.Password != "" {
		t.Fatalf("client load: %v (password %q)", err, c.Upstream.Password)
	}
}

// queue.flush takes auto (the default), syncfs or fdatasync; flush_force
// only goes with syncfs.
func TestQueueFlush(t *testing.T) {
	if c := mustParse(t, testEnv(nil), ""); c.Queue.Flush != "auto" || c.Queue.FlushForce {
		t.Errorf("default queue.flush = %q, force %v", c.Queue.Flush, c.Queue.FlushForce)
	}
	for _, src := range []string{"flush = \"syncfs\"\nflush_force = true\n", "flush = \"fdatasync\"\n"} {
		if errs := parseErrs(t, testEnv(nil), "[queue]\n"+src); len(errs) != 0 {
			t.Errorf("%q: %q", src, errs)
		}
	}
	errs := parseErrs(t, testEnv(nil), "[queue]\nflush = \"sync\"\nflush_force = true\n")
	if len(errs) != 2 || !strings.Contains(errs[0], "queue.flush:") || !strings.Contains(errs[1], "queue.flush_force:") {
		t.Errorf("bad flush keys: %q", errs)
	}
}
