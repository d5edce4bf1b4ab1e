// Package routes benchmarks route isolation: smarthost B's drain rate with
// route A's smarthost tarpitting (10 s before every reply) and a backlog of
// 1,000 messages for A, against B alone. Loopback only; every wait is
// bounded. Run it with bench/routes.sh (or go test -run NONE -bench
// RouteIsolation -benchtime 1x ./bench/routes).
package routes

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run()) // nothing to build for plain go test
	}
	dir, err := os.MkdirTemp("", "relayd-bench-routes")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "relayd")
	if out, err := exec.Command("go", "build", "-o", binary, "relayd/cmd/relayd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building relayd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	perRoute = 1000
	delay    = 10 * time.Second
	senders  = 8 // concurrent SMTP sessions submitting
)

// tarpit is a plain SMTP server that waits delay before every reply.
type tarpit struct {
	l    net.Listener
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn []net.Conn
}

func newTarpit(b *testing.B) *tarpit {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tp := &tarpit{l: l, stop: make(chan struct{})}
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.conn = append(tp.conn, c)
			tp.mu.Unlock()
			tp.wg.Add(1)
			go func() { defer tp.wg.Done(); tp.serve(c) }()
		}
	}()
	return tp
}

func (tp *tarpit) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func(s string) bool {
		select {
		case <-time.After(delay):
		case <-tp.stop:
			return false
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Write([]byte(s + "\r\n"))
		return err == nil
	}
	read := func() (string, bool) {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := r.ReadString('\n')
		return strings.TrimRight(line, "\r\n"), err == nil
	}
	if !reply("220 tarpit.test ESMTP") {
		return
	}
	for range 10000 {
		line, ok := read()
		if !ok {
			return
		}
		cmd := strings.ToUpper(line)
		var out string
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			out = "250-tarpit.test\r\n250 8BITMIME"
		case strings.HasPrefix(cmd, "DATA"):
			if !reply("354 go ahead") {
				return
			}
			for range 1 << 20 {
				l, ok := read()
				if !ok {
					return
				}
				if l == "." {
					break
				}
			}
			out = "250 2.0.0 ok"
		case strings.HasPrefix(cmd, "QUIT"):
			reply("221 bye")
			return
		default:
			out = "250 2.0.0 ok"
		}
		if !reply(out) {
			return
		}
	}
}

func (tp *tarpit) close() {
	close(tp.stop)
	tp.l.Close()
	tp.mu.Lock()
	for _, c := range tp.conn {
		c.Close()
	}
	tp.mu.Unlock()
	tp.wg.Wait()
}

// daemon runs relayd with [upstream] -> a dummy, route A -> tarpit (when
// given), route B -> sink, both tls = "none" on loopback.
type daemon struct {
	cmd  *exec.Cmd
	addr string
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+) mode=smtp`)

func startDaemon(b *testing.B, dir, aAddr, bAddr string) *daemon {
	b.Helper()
	cfg := fmt.Sprintf(`hostname = "relay.bench.test"
state_dir = %q
[listen]
smtp = ["127.0.0.1:0"]
max_connections_per_ip = 100
[upstream]
address = %q
tls = "none"
[queue]
concurrency = 4
min_backoff = "10m"
[[smarthost]]
name = "a"
address = %q
tls = "none"
timeout = "30s"
[[smarthost]]
name = "b"
address = %q
tls = "none"
[[route]]
recipient_domain = ["a.test"]
smarthost = "a"
[[route]]
recipient_domain = ["b.test"]
smarthost = "b"
[log]
level = "info"
`, filepath.Join(dir, "spool"), bAddr, aAddr, bAddr)
	path := filepath.Join(dir, "relayd.toml")
	os.WriteFile(path, []byte(cfg), 0o644)
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Env = append(os.Environ(), "RELAYD_CONFIG=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	d := &daemon{cmd: cmd}
	select {
	case d.addr = <-addrc:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		b.Fatal("relayd did not start")
	}
	return d
}

func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// submit sends n messages to rcpt@domain over senders sessions.
func submit(b *testing.B, addr, domain string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := s; i < n; i += senders {
				to := fmt.Sprintf("r%d@%s", i, domain)
				msg := fmt.Sprintf("From: app@bench.test\r\nTo: %s\r\nSubject: %d\r\n\r\n%s\r\n", to, i, strings.Repeat(strings.Repeat("x", 76)+"\r\n", 26))
				if err := c.SendMail("app@bench.test", []string{to}, strings.NewReader(msg)); err != nil {
					errs <- err
					return
				}
			}
			c.Quit()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// drainB measures how long B's perRoute messages take from the first
// submission to the last delivery, with or without A's tarpit backlog.
func drainB(b *testing.B, withA bool) time.Duration {
	dir, err := os.MkdirTemp("/var/tmp", "relayd-bench-routes") // a real disk: fsync is the cost
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sink := smtptest.New(b, smtptest.Options{})
	aAddr := "127.0.0.1:9" // unused without A
	var tp *tarpit
	if withA {
		tp = newTarpit(b)
		aAddr = tp.l.Addr().String()
	}
	d := startDaemon(b, dir, aAddr, sink.Addr())
	if withA {
		submit(b, d.addr, "a.test", perRoute) // A's backlog, queued before B starts
	}
	start := time.Now()
	submit(b, d.addr, "b.test", perRoute)
	sink.WaitMessages(b, perRoute, 5*time.Minute)
	took := time.Since(start)
	if tp != nil {
		tp.mu.Lock()
		n := len(tp.conn)
		tp.mu.Unlock()
		if n == 0 {
			b.Fatal("relayd never connected to the tarpit: route A was not under load")
		}
		b.Logf("the tarpit holds %d connections from relayd", n)
		tp.close() // before the daemon, so its deliveries end at once
	}
	d.stop()
	return took
}

// BenchmarkRouteIsolation alternates the two cases (ABBAAB...) over
// rounds and compares medians: the machine is shared, single runs are
// noisy, and the first run is cold.
func BenchmarkRouteIsolation(b *testing.B) {
	const rounds = 3
	for range b.N {
		drainB(b, false) // warm-up: page cache, binary
		var alone, loaded []time.Duration
		for r := range rounds {
			if r%2 == 0 {
				alone = append(alone, drainB(b, false))
				loaded = append(loaded, drainB(b, true))
			} else {
				loaded = append(loaded, drainB(b, true))
				alone = append(alone, drainB(b, false))
			}
		}
		slices.Sort(alone)
		slices.Sort(loaded)
		rateAlone := float64(perRoute) / alone[rounds/2].Seconds()
		rateLoaded := float64(perRoute) / loaded[rounds/2].Seconds()
		b.ReportMetric(rateAlone, "B-alone-msg/s")
		b.ReportMetric(rateLoaded, "B-with-A-tarpit-msg/s")
		b.ReportMetric(rateLoaded/rateAlone, "ratio")
		b.Logf("B alone: %v; with A tarpitting (%d queued, %s per reply): %v; medians %.0f/s vs %.0f/s, ratio %.2f",
			alone, perRoute, delay, loaded, rateAlone, rateLoaded, rateLoaded/rateAlone)
	}
}
