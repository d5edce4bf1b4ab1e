package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayd/dnscheck"
	"relayd/queue"
)

// A spool that cannot be made is reported once, naming state_dir, with the
// fix (it read "queue: mkdir X: mkdir X: not a directory").
func TestStateDirErrorNamesStateDirOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "afile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(file, "spool")
	_, err := queue.Open(queue.Config{Dir: spool})
	if err == nil {
		t.Fatal("queue.Open under a file succeeded")
	}
	msg := stateDirError(spool, err).Error()
	if !strings.HasPrefix(msg, "state_dir "+spool+": ") || strings.Count(msg, file+": not a directory") != 1 ||
		strings.Count(msg, "mkdir") != 1 || !strings.Contains(msg, "fix: ") {
		t.Errorf("got %q: want state_dir named, the path and the operation once, and a fix", msg)
	}
}

// A listen address in use gets the hint relayd check gives.
func TestListenErrorHint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = listenSMTP(l.Addr().String())
	if err == nil {
		t.Fatal("second listen succeeded")
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	msg := listenError(fmt.Errorf("listen.smtp %s: %w", l.Addr(), err)).Error()
	if !strings.Contains(msg, "address already in use") || !strings.Contains(msg, "ss -ltnp 'sport = :"+port+"'") {
		t.Errorf("got %q", msg)
	}
}

// relayd check as a user who is not state_dir's owner FAILs: relayd serve
// as that user could not set the directory's mode and would not start.
func TestCheckStateDirNotOwnedFails(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o1777); err != nil { // writable by all, owned by us
		t.Fatal(err)
	}
	os.Chmod(spool, 0o1777)
	cfg := filepath.Join(dir, "relayd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("hostname = \"relay.example.com\"\nstate_dir = %q\n[listen]\nsmtp = [\"127.0.0.1:0\"]\n", spool)), 0o644)
	other := os.Geteuid() + 4242 // not the owner, and not root
	c := &checker{path: cfg, noDNS: true, noSmarthost: true, now: time.Now, euid: other}
	var got *dnscheck.Finding
	for _, f := range c.run(context.Background()) {
		if strings.HasPrefix(f.What, "state_dir") {
			f := f
			got = &f
		}
	}
	if got == nil || got.Level != dnscheck.Fail || !strings.Contains(got.Fix, "would fail to start") {
		t.Errorf("state_dir finding for a non-owner: %+v, want FAIL saying relayd serve would fail", got)
	}
	c = &checker{path: cfg, noDNS: true, noSmarthost: true, now: time.Now, euid: os.Geteuid()}
	for _, f := range c.run(context.Background()) {
		if strings.HasPrefix(f.What, "state_dir") && f.Level != dnscheck.OK {
			t.Errorf("state_dir finding for its owner: %+v", f)
		}
	}
}

// A DKIM key problem is reported as FILE: KEY: problem, as every other
// config problem (it lacked the FILE: prefix).
func TestDKIMKeyProblemHasFilePrefix(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	var out, errb strings.Builder
	if code := run([]string{"relayd", "dkim", "keygen", "--domain", "example.com", "--selector", "s1", "--out", key}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("keygen: %d %s", code, errb.String())
	}
	os.Chmod(key, 0o644)
	cfgPath := filepath.Join(dir, "relayd.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("hostname = \"relay.example.com\"\nstate_dir = %q\n[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey_file = %q\n",
		filepath.Join(dir, "spool"), key)), 0o644)
	var stderr strings.Builder
	if _, err := newDaemon(cfgPath, &stderr); err == nil {
		t.Fatal("a 0644 key was accepted")
	}
	if want := cfgPath + ": dkim[0].key_file: "; !strings.Contains(stderr.String(), want) {
		t.Errorf("got:\n%s\nwant a line with %q", stderr.String(), want)
	}
}
