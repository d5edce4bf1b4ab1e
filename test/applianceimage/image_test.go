package applianceimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"relayd/internal/smtptest"
)

const (
	bootTimeout     = 15 * time.Minute // TCG on 2 cores: normally 1 to 3 minutes
	deliveryTimeout = 5 * time.Minute
	// As in docs/appliance.md's drive relayd.toml.
	smarthostUser = "relay@example.com"
	smarthostPass = "appliance-test-secret"
	dkimDomain    = "example.com"
	dkimSelector  = "s2026"
	// The guest's smarthost: QEMU's guestfwd (the only way out under
	// restrict=on) carries it to the test smarthost on the host.
	guestSmarthostIP = "10.0.2.100"
	guestSmarthost   = guestSmarthostIP + ":587"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// docBlocks returns the fenced blocks of docs/appliance.md in the given
// language ("toml", "sh"), in order.
func docBlocks(t *testing.T, lang string) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/appliance.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && l == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && l == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	return blocks
}

// docDriveConfig is the configuration drive's relayd.toml of
// docs/appliance.md, with only the smarthost address changed and ca_file
// uncommented (the test's smarthost has a private CA).
func docDriveConfig(t *testing.T, smarthost string) string {
	t.Helper()
	var doc string
	for _, b := range docBlocks(t, "toml") {
		if strings.Contains(b, "# + connected networks") {
			doc = b
			break
		}
	}
	if doc == "" {
		t.Fatal("docs/appliance.md has no configuration drive relayd.toml (a toml block with \"# + connected networks\")")
	}
	cfg := doc
	for _, r := range [][2]string{
		{`address = "smtp.isp.example:587"`, fmt.Sprintf("address = %q", smarthost)},
		{`# ca_file = "/etc/relayd/tls/smarthost-ca.pem"`, `ca_file = "/etc/relayd/tls/smarthost-ca.pem"`},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("docs/appliance.md's drive relayd.toml has no line %s:\n%s", r[0], doc)
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	for _, want := range []string{`username = "` + smarthostUser + `"`, `domain = "` + dkimDomain + `"`,
		`selector = "` + dkimSelector + `"`} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("docs/appliance.md's drive relayd.toml has no %s", want)
		}
	}
	return cfg
}

// configDrive writes the files of the configuration drive, with the doc's
// relayd.toml, and makes the drive with the doc's commands (run as printed
// in dir).
func configDrive(t *testing.T, dir, smarthost string, caPEM []byte) string {
	t.Helper()
	files := map[string]string{
		"relayd.toml":                docDriveConfig(t, smarthost),
		"smarthost.secret":           smarthostPass + "\n",
		"drive/hostname":             "relay-test\n",
		"drive/tls/smarthost-ca.pem": string(caPEM),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cmds string
	for _, b := range docBlocks(t, "sh") {
		if strings.Contains(b, "mke2fs") && strings.Contains(b, "-L RELAYD") {
			cmds = b
			break
		}
	}
	if cmds == "" {
		t.Fatal("docs/appliance.md has no sh block that makes the drive with mke2fs -L RELAYD")
	}
	// The doc's "mkdir drive" would fail on the drive/ made above for the
	// extra files: make it -p, the only change.
	cmds = strings.Replace(cmds, "mkdir drive", "mkdir -p drive", 1)
	c := exec.Command("sh", "-ec", cmds)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("the doc's drive commands:\n%s\n%v\n%s", cmds, err, out)
	}
	img := filepath.Join(dir, "config.img")
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("the doc's drive commands made no config.img: %v", err)
	}
	return img
}

func TestDocDriveConfig(t *testing.T) {
	cfg := docDriveConfig(t, guestSmarthost)
	for _, want := range []string{`smtp = ["0.0.0.0:25"]`, `address = "` + guestSmarthost + `"`,
		"\nca_file = ", `relay_networks = ["127.0.0.0/8", "::1/128"] # + connected networks`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("drive config lacks %s:\n%s", want, cfg)
		}
	}
}

// waitBanner polls the forwarded port until the guest's relayd greets.
// Before that, QEMU accepts the connection and closes it at once.
func waitBanner(ctx context.Context, addr string) (string, error) {
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "220") {
				return strings.TrimSpace(line), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no SMTP banner on %s: %w", addr, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

var recordRE = regexp.MustCompile(`(\S+)\s+IN\s+TXT\s+\(([^)]*)\)`)
var quotedRE = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)

// dkimRecord finds the DNS record the first-boot unit printed for name
// ("selector._domainkey.domain.") and joins its strings (RFC 6376 §3.6.2.2).
func dkimRecord(console []byte, name string) (string, bool) {
	for _, m := range recordRE.FindAllSubmatch(console, -1) {
		if string(m[1]) != name {
			continue
		}
		var b strings.Builder
		for _, q := range quotedRE.FindAllSubmatch(m[2], -1) {
			b.WriteString(strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(string(q[1])))
		}
		return b.String(), true
	}
	return "", false
}

func TestDKIMRecordParse(t *testing.T) {
	console := []byte("noise\r\nPublish this DNS record:\r\n" +
		`s._domainkey.d.test. IN TXT ( "v=DKIM1; k=rsa; " "p=AAA" "BBB" )` + "\r\n====\r\n")
	got, ok := dkimRecord(console, "s._domainkey.d.test.")
	if !ok || got != "v=DKIM1; k=rsa; p=AAABBB" {
		t.Fatalf("dkimRecord = %q, %v", got, ok)
	}
	if _, ok := dkimRecord(console, "x._domainkey.d.test."); ok {
		t.Fatal("found a record for another name")
	}
}

func TestApplianceImage(t *testing.T) {
	dir := os.Getenv("RELAYD_IMAGE_DIR")
	if dir == "" {
		t.Skip("RELAYD_IMAGE_DIR not set: run test/appliance-image.sh")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mke2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	image := filepath.Join(dir, "relayd-appliance.qcow2")
	st, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	// The smarthost: STARTTLS required, AUTH required, certificate for the
	// address the guest dials.
	ca := smtptest.NewCA(t)
	leaf := ca.Leaf(t, guestSmarthostIP)
	srv := smtptest.New(t, smtptest.Options{
		RequireTLS: true,
		Users:      map[string]string{smarthostUser: smarthostPass},
		Cert:       &leaf,
	})
	_, portStr, _ := net.SplitHostPort(srv.Addr())
	var smarthostPort int
	fmt.Sscan(portStr, &smarthostPort)

	drive := configDrive(t, tmp, guestSmarthost, ca.PEM())
	overlay := filepath.Join(tmp, "overlay.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
		"-b", image, overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}

	smtpPort := freePort(t)
	console := filepath.Join(tmp, "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout+deliveryTimeout)
	defer cancel()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-m", "768", "-smp", "2",
		"-display", "none", "-monitor", "none", "-no-reboot",
		"-serial", "file:"+console,
		"-kernel", filepath.Join(dir, "relayd-appliance.vmlinuz"),
		"-initrd", filepath.Join(dir, "relayd-appliance.initrd"),
		"-append", "root=LABEL=relayd-root ro console=ttyS0 panic=-1",
		"-drive", "file="+overlay+",if=virtio,format=qcow2",
		"-drive", "file="+drive+",if=virtio,format=raw,readonly=on",
		// Isolated: the guest reaches nothing but the two forwards. The
		// guestfwd command runs once per connection, joining it to the
		// smarthost (bash's /dev/tcp: no extra tool).
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:25,"+
			"guestfwd=tcp:%s-cmd:bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; cat <&3 & exec cat >&3'",
			smtpPort, guestSmarthost, smarthostPort),
		"-device", "virtio-net-pci,netdev=n0",
	)
	var qemuOut bytes.Buffer
	qemu.Stdout, qemu.Stderr = &qemuOut, &qemuOut
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- qemu.Wait() }()
	t.Cleanup(func() {
		_ = qemu.Process.Kill()
		<-exited
		if keep := os.Getenv("RELAYD_CONSOLE_LOG"); keep != "" {
			if b, err := os.ReadFile(console); err == nil {
				_ = os.WriteFile(keep, b, 0o644)
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(console); err == nil {
				t.Logf("serial console (last 6000 bytes):\n%s", tail(b, 6000))
			}
			t.Logf("qemu output:\n%s", qemuOut.String())
		}
	})

	bootCtx, bootCancel := context.WithTimeout(ctx, bootTimeout)
	defer bootCancel()
	banner, err := waitBanner(bootCtx, fmt.Sprintf("127.0.0.1:%d", smtpPort))
	if err != nil {
		select {
		case e := <-exited:
			t.Fatalf("qemu exited: %v", e)
		default:
		}
		t.Fatal(err)
	}
	bootTime := time.Since(start)
	t.Logf("guest relayd answered after %s: %s", bootTime.Round(time.Second), banner)

	// The DKIM record the guest printed on first boot.
	cons, err := os.ReadFile(console)
	if err != nil {
		t.Fatal(err)
	}
	name := dkimSelector + "._domainkey." + dkimDomain + "."
	record, ok := dkimRecord(cons, name)
	if !ok {
		t.Fatalf("no DKIM record for %s on the console", name)
	}
	t.Logf("DKIM record from the console: %.60s...", record)

	// One message in through the forwarded port 25.
	msg := "From: Alice <alice@example.com>\r\n" +
		"To: bob@example.net\r\n" +
		"Subject: appliance image test\r\n" +
		"\r\n" +
		"Sent through the relayd appliance under QEMU.\r\n"
	// Through the forward the guest sees the client as 10.0.2.2: it may
	// relay only because relayd-networks.service added the guest's own
	// network, 10.0.2.0/24, to relay_networks.
	if err := smtp.SendMail(fmt.Sprintf("127.0.0.1:%d", smtpPort), nil,
		"alice@example.com", []string{"bob@example.net"}, []byte(msg)); err != nil {
		t.Fatalf("send to the guest: %v", err)
	}
	got := srv.WaitMessages(t, 1, deliveryTimeout)[0]
	if !got.TLS || got.AuthUser != smarthostUser {
		t.Errorf("smarthost saw TLS=%v AUTH=%q, want STARTTLS and %q", got.TLS, got.AuthUser, smarthostUser)
	}
	if got.From != "alice@example.com" || len(got.To) != 1 || got.To[0] != "bob@example.net" {
		t.Errorf("envelope %s -> %v", got.From, got.To)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got.Data), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != strings.TrimSuffix(name, ".") {
				return nil, fmt.Errorf("unexpected DKIM lookup %s", domain)
			}
			return []string{record}, nil
		},
	})
	if err != nil {
		t.Fatalf("DKIM verify: %v", err)
	}
	signed := false
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("DKIM signature d=%s: %v", v.Domain, v.Err)
		} else if v.Domain == dkimDomain {
			signed = true
		}
	}
	if !signed {
		t.Fatalf("no valid DKIM signature for d=%s; message:\n%s", dkimDomain, got.Data)
	}
	t.Logf("APPLIANCE RESULT: boot-to-SMTP %s, image %d MiB (qcow2), delivered DKIM-signed d=%s",
		bootTime.Round(time.Second), st.Size()>>20, dkimDomain)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
