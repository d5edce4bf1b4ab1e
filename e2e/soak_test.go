package e2e

// Durability under attack: SIGKILL during a load (crash soak), a full
// spool filesystem, and 1,000 concurrent clients. Each prints a one-line
// result; bench/soak.sh runs the long form of the crash soak.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/smtptest"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// soakResult counts, for the tags that got a 250, how many arrived.
func soakResult(sh *smtptest.Server, accepted map[string]bool) (delivered, lost, dups int) {
	got := map[string]int{}
	for _, m := range sh.Messages() {
		_, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
		tag := string(bytes.TrimSpace(body))
		if accepted[tag] {
			got[tag]++
		}
	}
	for tag := range accepted {
		switch n := got[tag]; {
		case n == 0:
			lost++
		default:
			delivered++
			dups += n - 1
		}
	}
	return delivered, lost, dups
}

// TestCrashSoak sends messages (one Go client per message, so that every
// 250 is counted exactly) while relayd is killed with SIGKILL at random
// moments and restarted, then lets the queue drain. Long form:
// RELAYD_SOAK_MESSAGES=5000 RELAYD_SOAK_KILLS=20 (or bench/soak.sh).
func TestCrashSoak(t *testing.T) {
	total := envInt("RELAYD_SOAK_MESSAGES", 500)
	kills := envInt("RELAYD_SOAK_KILLS", 3)
	const workers = 8
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	var cur atomic.Pointer[relayd]
	cur.Store(start(t, dir, cfg))

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		next     atomic.Int64
		wg       sync.WaitGroup
		gaveUp   atomic.Int64
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				// A refused or cut attempt is retried under a new tag:
				// it may or may not have been queued, and only 250s count.
				for a := 0; ; a++ {
					if a == 200 {
						gaveUp.Add(1)
						break
					}
					tag := fmt.Sprintf("soak-%05d-%d", i, a)
					c, err := smtp.Dial(cur.Load().addr)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					err = c.SendMail("load@example.com", []string{"sink@example.org"},
						strings.NewReader("Subject: "+tag+"\r\n\r\n"+tag+"\r\n"))
					c.Close()
					if err == nil {
						mu.Lock()
						accepted[tag] = true
						mu.Unlock()
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	// Kill at random points of the load, each after a random extra delay.
	points := make([]int64, kills)
	for k := range points {
		points[k] = int64(total) * int64(k+1) / int64(kills+1)
	}
	for _, p := range points {
		for next.Load() < p {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		cur.Load().kill()
		cur.Store(start(t, dir, cfg))
	}
	wg.Wait()
	if n := gaveUp.Load(); n > 0 {
		t.Errorf("%d messages could not be submitted at all", n)
	}
	deadline := time.Now().Add(time.Duration(total/5+60) * time.Second)
	for {
		delivered, lost, dups := soakResult(sh, accepted)
		if lost == 0 || time.Now().After(deadline) {
			line := fmt.Sprintf("accepted=%d delivered_unique=%d lost=%d duplicates=%d", len(accepted), delivered, lost, dups)
			t.Logf("%s (kills=%d)", line, kills)
			if lost > 0 {
				t.Fatalf("%s\n%s", line, cur.Load().logs())
			}
			if len(accepted) < total {
				t.Errorf("only %d of %d messages accepted", len(accepted), total)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mountTmpfs mounts a tmpfs of size at dir, or skips the test.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("disk-full test needs a small filesystem: cannot mount tmpfs (root required): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

// fill writes zeros to path until the filesystem is full.
func fill(t *testing.T, path string, limit int64) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for limit <= 0 || n < limit {
		m, err := f.Write(buf)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func freeBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// diskBody is a message of about 100 kB identified by tag.
func diskBody(tag string) string {
	var b strings.Builder
	b.WriteString("Subject: " + tag + "\r\n\r\n" + tag + "\r\n")
	io.Copy(&b, &lineGen{left: int64(len(genLine)) * 1300}) // whole lines: the body stays byte for byte
	return b.String()
}

// TestDiskFull puts the spool on an 8 MB tmpfs, fills it during a load,
// and checks: clients get 452 4.3.1; what was queued survives intact; after
// space is freed relayd accepts again without a restart and delivers
// everything. Then queue.min_free_bytes refuses mail before the disk is
// full.
func TestDiskFull(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	sh.Stop() // keep everything in the queue
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	mountTmpfs(t, spool, "8m")
	cfg := writeConfig(t, dir, sh, "", "min_free_bytes = 0")
	r := start(t, dir, cfg)

	var (
		mu       sync.Mutex
		accepted = map[string]string{} // tag -> body
		refusals = map[string]int{}
		n        atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				tag := fmt.Sprintf("disk-%04d", n.Add(1))
				body := diskBody(tag)
				c, err := smtp.Dial(r.addr)
				if err != nil {
					mu.Lock()
					refusals["dial: "+err.Error()]++
					mu.Unlock()
					return
				}
				err = c.SendMail("load@example.com", []string{"sink@example.org"}, strings.NewReader(body))
				c.Close()
				mu.Lock()
				var se *smtp.SMTPError
				switch {
				case err == nil:
					accepted[tag] = body
				case errors.As(err, &se):
					refusals[fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)]++
				default:
					refusals[err.Error()]++
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	for n.Load() < 12 {
		time.Sleep(10 * time.Millisecond)
	}
	ballast := filepath.Join(spool, "ballast")
	filled := fill(t, ballast, 0)
	time.Sleep(1500 * time.Millisecond) // the load runs into the full disk
	stop.Store(true)
	wg.Wait()
	t.Logf("filled %d bytes; accepted %d; refusals %v", filled, len(accepted), refusals)
	full := 0
	for msg, k := range refusals {
		if strings.HasPrefix(msg, "452 4.3.1 ") {
			full += k
		} else {
			t.Errorf("refusal other than 452 4.3.1 (%d times): %s", k, msg)
		}
	}
	if full == 0 {
		t.Fatalf("no 452 4.3.1 with a full spool")
	}
	if len(accepted) == 0 {
		t.Fatal("nothing accepted before the disk filled")
	}

	// Space freed: accepted again, same process.
	os.Remove(ballast)
	var err error
	for i := 0; i < 50; i++ {
		if err = r.send(t, "load@example.com", []string{"sink@example.org"}, diskBody("disk-after")); err == nil {
			accepted["disk-after"] = diskBody("disk-after")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("not accepting after space was freed: %v", err)
	}

	// Everything queued is delivered intact; nothing was quarantined.
	sh.Start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		for _, m := range sh.Messages() {
			for tag, body := range accepted {
				if bytes.HasSuffix(m.Data, []byte("\r\n\r\n"+tag+"\r\n"+body[strings.Index(body, "\r\n\r\n")+4+len(tag)+2:])) {
					got[tag] = true
				}
			}
		}
		if len(got) == len(accepted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted messages delivered intact\n%s", len(got), len(accepted), r.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ents, _ := os.ReadDir(filepath.Join(spool, "corrupt")); len(ents) != 0 || strings.Contains(r.logs(), "quarantin") {
		t.Errorf("quarantined after disk full: %d entries\n%s", len(ents), r.logs())
	}
	t.Logf("disk full: accepted=%d delivered_intact=%d refused_452=%d lost=0", len(accepted), len(accepted), full)

	// queue.min_free_bytes = 4 MiB refuses with about 3 MB still free.
	r.stop()
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("min_free_bytes = 0"), []byte("min_free_bytes = 4194304"), 1), 0o644)
	fill(t, ballast, 5<<20)
	free := freeBytes(t, spool)
	if free < 1<<20 || free >= 4<<20 {
		t.Fatalf("setup: %d bytes free, want between 1 and 4 MiB", free)
	}
	r = start(t, dir, cfg)
	err = r.send(t, "load@example.com", []string{"sink@example.org"}, "Subject: min free\r\n\r\nx\r\n")
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Errorf("with %d bytes free and min_free_bytes 4 MiB: %v, want 452 4.3.1", free, err)
	}
	os.Remove(ballast)
	if err := r.send(t, "load@example.com", []string{"sink@example.org"}, "Subject: min free ok\r\n\r\nx\r\n"); err != nil {
		t.Errorf("after freeing space: %v", err)
	}
}

// TestConcurrentLoad opens 1,000 connections from 20 loopback addresses (50
// each: the default per-IP cap), holds them all open at once, then sends one
// message on each. Every reply is 250 or 4xx, and every 250 is delivered.
func TestConcurrentLoad(t *testing.T) {
	const conns, ips = 1000, 20
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 8192 {
		lim.Cur = min(lim.Max, 8192)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) // inherited by relayd
	}
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "concurrency = 8")
	b, _ := os.ReadFile(cfg)
	// Opening 1,000 sessions takes longer than the harness's 3s idle timeout.
	os.WriteFile(cfg, bytes.Replace(b, []byte(`idle_timeout = "3s"`), []byte(`idle_timeout = "120s"`), 1), 0o644)
	r := start(t, dir, cfg)
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.20")}}).Dial("tcp", r.addr); err != nil {
		t.Skipf("cannot use 127.0.0.x source addresses: %v", err)
	} else {
		c.Close()
	}
	base := vmHWM(t, r.cmd.Process.Pid)

	var (
		ready, done sync.WaitGroup
		gate        = make(chan struct{})
		mu          sync.Mutex
		accepted    = map[string]bool{}
		deferred    = map[string]int{}
		bad         []string
	)
	ready.Add(conns)
	done.Add(conns)
	for i := 0; i < conns; i++ {
		go func() {
			defer done.Done()
			fail := func(err error) {
				mu.Lock()
				defer mu.Unlock()
				if c := code(err); c/100 == 4 {
					deferred[fmt.Sprint(c)]++
				} else {
					bad = append(bad, err.Error())
				}
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%ips))}, Timeout: 30 * time.Second}
			conn, err := d.Dial("tcp", r.addr)
			if err != nil {
				ready.Done()
				fail(err)
				return
			}
			c := smtp.NewClient(conn)
			defer c.Close()
			err = c.Hello("load.test") // the session exists from here on
			ready.Done()
			if err != nil {
				fail(err)
				return
			}
			<-gate
			tag := fmt.Sprintf("load-%04d", i)
			if err := c.SendMail("load@example.com", []string{"sink@example.org"},
				strings.NewReader("Subject: "+tag+"\r\n\r\n"+tag+"\r\n")); err != nil {
				fail(err)
				return
			}
			c.Quit()
			mu.Lock()
			accepted[tag] = true
			mu.Unlock()
		}()
	}
	ready.Wait()
	open := vmHWM(t, r.cmd.Process.Pid)
	close(gate)
	done.Wait()
	if len(bad) > 0 {
		t.Errorf("%d clients got neither 250 nor 4xx, e.g. %s", len(bad), bad[0])
	}
	deadline := time.Now().Add(180 * time.Second)
	for {
		delivered, lost, dups := soakResult(sh, accepted)
		if lost == 0 || time.Now().After(deadline) {
			peak := vmHWM(t, r.cmd.Process.Pid)
			t.Logf("load: connections=%d accepted=%d deferred_4xx=%v delivered_unique=%d lost=%d duplicates=%d; relayd (race build) peak RSS %d kB (start %d kB, all connections open %d kB)",
				conns, len(accepted), deferred, delivered, lost, dups, peak, base, open)
			if lost > 0 {
				t.Fatalf("%d accepted messages lost", lost)
			}
			if len(accepted) < conns/2 {
				t.Errorf("only %d of %d accepted", len(accepted), conns)
			}
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
