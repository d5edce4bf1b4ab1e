package e2e

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"relayd/internal/smtptest"
)

// A reload re-reads listen.tls_cert/tls_key: new TLS handshakes present the
// new certificate, without a restart and without dropping the listener.
func TestCertificateReloadedOnSIGHUP(t *testing.T) {
	e := startSubmission(t)
	cfg, err := os.ReadFile(e.configPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`tls_cert = "([^"]+)"`).FindSubmatch(cfg)
	if m == nil {
		t.Fatal("no tls_cert in the config")
	}
	certFile := string(m[1])
	keyFile := filepath.Join(filepath.Dir(certFile), "key.pem")

	handshake := func(conf *tls.Config) error {
		c, err := tls.Dial("tcp", e.subs, conf)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if err := handshake(e.clientTLS); err != nil {
		t.Fatalf("first certificate: %v", err)
	}

	ca2 := smtptest.NewCA(t)
	newCert, newKey := writeCert(t, t.TempDir(), ca2)
	for _, f := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.r.cmd.Process.Signal(syscall.SIGHUP)
	e.r.waitLog(t, `configuration reloaded`, 20*time.Second)

	newTLS := &tls.Config{RootCAs: ca2.Pool(), ServerName: "localhost"}
	if err := handshake(newTLS); err != nil {
		t.Errorf("after reload, the new certificate is not served: %v", err)
	}
	if err := handshake(e.clientTLS); err == nil {
		t.Errorf("after reload, the old certificate is still served")
	}
}
