package e2e

// Login attacks on the submission ports (issue 19): the failure budget of
// an IP must hold against a user who owns one account, and against many
// concurrent attempts.

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"relayd/internal/smtptest"
)

type authEnv struct {
	r         *relayd
	subs      string // implicit TLS
	metrics   string
	clientTLS *tls.Config
}

// startAuthEnv runs relayd with accounts alice (password "alice-pw") and
// bob ("bob-pw") hashed at cost, an implicit-TLS listener and metrics.
func startAuthEnv(t *testing.T, cost int, extraListen string) *authEnv {
	t.Helper()
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	ca := smtptest.NewCA(t)
	certFile, keyFile := writeCert(t, dir, ca)
	var users strings.Builder
	for _, u := range []string{"alice", "bob"} {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "[[users]]\nname = %q\npassword_hash = %q\nsenders = [\"%s@example.com\"]\n", u, h, u)
	}
	cfg := writeConfig(t, dir, sh, users.String(), "\n[metrics]\nlisten = \"127.0.0.1:0\"\n")
	editConfig(t, cfg, "[listen]", fmt.Sprintf("submissions = [\"127.0.0.1:0\"]\ntls_cert = %q\ntls_key = %q\n%s\n", certFile, keyFile, extraListen))
	r := start(t, dir, cfg)
	r.waitLog(t, `mode=metrics`, 10*time.Second)
	r.waitLog(t, `mode=submissions`, 10*time.Second)
	m := regexp.MustCompile(`msg=listening addr=(\S+) mode=metrics`).FindStringSubmatch(r.logs())
	return &authEnv{r: r, subs: listenerAddr(t, r, "submissions"), metrics: m[1],
		clientTLS: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
}

// authConn is an implicit-TLS session that has said EHLO.
type authConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (e *authEnv) dialAuth(t *testing.T) *authConn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", e.subs, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ac := &authConn{c: c, br: bufio.NewReader(c)}
	if code, text := ac.reply(); code != 220 {
		t.Fatalf("greeting: %d %s", code, text)
	}
	if code, text := ac.cmd("EHLO attacker.test"); code != 250 {
		t.Fatalf("EHLO: %d %s", code, text)
	}
	return ac
}

func (ac *authConn) reply() (int, string) {
	ac.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	var text strings.Builder
	for {
		line, err := ac.br.ReadString('\n')
		text.WriteString(line)
		if err != nil || len(line) < 4 {
			return 0, text.String()
		}
		if line[3] != '-' {
			code, _ := strconv.Atoi(line[:3])
			return code, text.String()
		}
	}
}

func (ac *authConn) cmd(line string) (int, string) {
	ac.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := ac.c.Write([]byte(line + "\r\n")); err != nil {
		return 0, err.Error()
	}
	return ac.reply()
}

// auth sends AUTH PLAIN with an initial response and returns the code.
func (ac *authConn) auth(user, pass string) int {
	code, _ := ac.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
	return code
}

// closed reports whether the server hung up (a read ends at once).
func (ac *authConn) closed() bool {
	ac.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := ac.br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestAuthLockoutNotResetByOtherAccount: mallory owns alice's account and
// guesses bob's password from the same IP, logging in as alice between
// rounds of guesses. The IP's budget (10) must still run out.
func TestAuthLockoutNotResetByOtherAccount(t *testing.T) {
	e := startAuthEnv(t, bcrypt.MinCost, "")
	evaluated, locked := 0, false
	for round := 0; round < 6 && !locked; round++ {
		var wg sync.WaitGroup
		codes := make([]int, 3)
		for i := range codes {
			ac := e.dialAuth(t)
			wg.Add(1)
			go func() { defer wg.Done(); codes[i] = ac.auth("bob", fmt.Sprintf("guess-%d-%d", round, i)) }()
		}
		wg.Wait()
		for _, c := range codes {
			switch c {
			case 535:
				evaluated++
			case 421:
				locked = true
			default:
				t.Fatalf("guess for bob: %d", c)
			}
		}
		if c := e.dialAuth(t).auth("alice", "alice-pw"); c != 235 && c != 421 {
			t.Fatalf("alice's login: %d", c)
		}
	}
	if !locked || evaluated > 10 {
		t.Errorf("%d guesses for bob evaluated, locked out: %v; want at most 10 and a 421", evaluated, locked)
	}
	// The 421 ends the session (RFC 5321 §3.8).
	ac := e.dialAuth(t)
	if c := ac.auth("bob", "bob-pw"); c != 421 {
		t.Fatalf("locked-out IP with bob's right password: %d, want 421", c)
	}
	if !ac.closed() {
		t.Errorf("the connection stays open after 421")
	}
	mf := scrapeMetrics(t, e.metrics)
	if v := metricValue(mf, "relayd_messages_rejected_total", "reason", "auth"); v < float64(evaluated) {
		t.Errorf("relayd_messages_rejected_total{reason=\"auth\"} = %v after %d failed logins", v, evaluated)
	}
}

// TestAuthConcurrentAttemptsWithinBudget: 40 attempts sent at once from one
// IP against a budget of 10: at most 10 passwords may be checked.
func TestAuthConcurrentAttemptsWithinBudget(t *testing.T) {
	e := startAuthEnv(t, 10, "")
	conns := make([]*authConn, 40)
	for i := range conns {
		conns[i] = e.dialAuth(t)
	}
	codes := make([]int, len(conns))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, ac := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); <-start; codes[i] = ac.auth("bob", fmt.Sprintf("guess-%d", i)) }()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[535] > 10 || count[535]+count[421] != len(conns) {
		t.Errorf("40 concurrent guesses: %v (code: count); want at most 10 × 535, the rest 421", count)
	}
}
