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

// Networks that together cover a whole family are an open relay too; an
// IPv4-mapped entry is warned about (it never matches).
func TestRelayNetworksUnion(t *testing.T) {
	for _, set := range []string{
		`"0.0.0.0/1", "128.0.0.0/1"`,
		`"0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/3", "10.0.0.0/8"`,
		`"::/1", "8000::/1"`,
		`"127.0.0.0/8", "::/2", "4000::/2", "8000::/1"`,
	} {
		errs := parseErrs(t, testEnv(nil), "[listen]\nrelay_networks = ["+set+"]\n")
		if len(errs) != 1 || !strings.Contains(errs[0], "listen.relay_networks") || !strings.Contains(errs[0], "open relay") {
			t.Errorf("[%s]: %q", set, errs)
		}
	}
	for _, set := range []string{
		`"0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"`, // 224.0.0.0/3 missing
		`"0.0.0.0/1", "128.0.0.0/2", "224.0.0.0/3"`, // 192.0.0.0/3 missing
		`"::/1", "::ffff:0.0.0.0/96", "8000::/2"`,
		`"127.0.0.0/8", "::1/128"`,
	} {
		if errs := parseErrs(t, testEnv(nil), "[listen]\nrelay_networks = ["+set+"]\n"); len(errs) != 0 {
			t.Errorf("[%s] refused: %q", set, errs)
		}
	}
	e := testEnv(nil)
	c, err := e.parse([]byte("[listen]\nrelay_networks = [\"127.0.0.0/8\", \"::ffff:10.0.0.0/104\"]\n"), "/etc/relayd/relayd.toml")
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "listen.relay_networks[1]") || !strings.Contains(w[0], "10.0.0.0/8") {
		t.Errorf("warnings %q", w)
	}
}
