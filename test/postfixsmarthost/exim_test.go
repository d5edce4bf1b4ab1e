package postfixsmarthost

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Exim as smarthost, from its Debian packages extracted into a temporary
// directory (exim4 conflicts with postfix as a package, so it is never
// installed): RELAYD_EXIM_ROOT names the directory the .debs of
// exim4-daemon-light, exim4-base and libidn12 were extracted into
// (apt-get download + dpkg-deb -x; .ci/run does it). Exim looks up its
// compiled-in user Debian-exim before reading any configuration, so it runs
// in a private mount namespace (unshare -m) where /etc/passwd and
// /etc/group are bind-mounted copies with that user added and the
// extracted libraries are overlaid on the system's; the host's files are
// never changed.

func TestEximRefusalThenGoodMessage(t *testing.T) {
	root := os.Getenv("RELAYD_EXIM_ROOT")
	if root == "" {
		t.Skip("set RELAYD_EXIM_ROOT to a directory with exim4-daemon-light extracted into it")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root (mount namespace)")
	}
	bin := filepath.Join(root, "usr/sbin/exim4")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no exim4 under %s", root)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	dir, err := os.MkdirTemp("", "relayd-exim-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The namespace's passwd and group: the host's plus Debian-exim.
	const eximID = "65533"
	for _, f := range []struct{ name, line string }{
		{"passwd", "Debian-exim:x:" + eximID + ":" + eximID + "::/nonexistent:/usr/sbin/nologin\n"},
		{"group", "Debian-exim:x:" + eximID + ":\n"},
	} {
		b, err := os.ReadFile("/etc/" + f.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), append(b, f.line...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spool, mail := filepath.Join(dir, "spool"), filepath.Join(dir, "mail")
	for _, d := range []string{spool, mail} {
		os.MkdirAll(d, 0o755)
	}
	// With a -C configuration Exim gives up root for its deliveries, so
	// they run as its own user, which owns the spool and the Maildir.
	var uid int
	fmt.Sscan(eximID, &uid)
	os.Chown(spool, uid, uid)
	os.Chown(mail, uid, uid)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "exim.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`primary_hostname = exim.test.example
spool_directory = %[1]s/spool
log_file_path = %[1]s/spool/%%slog
log_selector = +smtp_connection
local_interfaces = 127.0.0.1
daemon_smtp_ports = %[2]d
host_lookup =
rfc1413_hosts =
keep_environment =
exim_path = %[5]s
tls_advertise_hosts =
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl
acl_rcpt:
  deny    recipients = refused@example.net
          message = no such user here
  accept  hosts = 127.0.0.1
  deny

acl_data:
  deny    condition = ${if match{$h_subject:}{^reject me}}
          message = content rejected by acl
  defer   senders = heidi@example.net
          message = mailbox over quota, try again later
  accept

begin routers
maildir:
  driver = accept
  domains = example.net
  transport = maildir

begin transports
maildir:
  driver = appendfile
  directory = %[1]s/mail/Maildir
  maildir_format
  create_directory
  user = %[3]s
  group = %[4]s
  return_path_add
`, dir, port, eximID, eximID, bin)), 0o644)
	lib := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	// In the namespace only: the extracted libraries (libidn) join the
	// system's through a read-only overlay, so Exim's re-execs of itself
	// (exim_path, for deliveries) find them without LD_LIBRARY_PATH.
	script := fmt.Sprintf("mount --bind %[1]s/passwd /etc/passwd && mount --bind %[1]s/group /etc/group && "+
		"mount -t overlay overlay -o lowerdir=%[2]s:/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu && exec %[3]s -C %[4]s -bdf -q1h",
		dir, lib, bin, conf)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // our exim daemon (sh exec'd it) only
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(spool, "mainlog"))
			rej, _ := os.ReadFile(filepath.Join(spool, "rejectlog"))
			t.Logf("exim output:\n%s\nmainlog:\n%s\nrejectlog:\n%s", out, log, rej)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exim never listened on %s: %v\n%s", addr, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	connects := func() int {
		b, _ := os.ReadFile(filepath.Join(spool, "mainlog"))
		return strings.Count(string(b), "TCP/IP connection count")
	}
	messages := func(t *testing.T) []message { return readMaildir(t, filepath.Join(mail, "Maildir")) }
	refusalScenario(t, dir, "Exim", addr, messages, connects)
}
