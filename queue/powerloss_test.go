package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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

	"relayd/internal/lazyfs"
)

// The power-loss tests run the queue in a child process (this test binary,
// TestPowerLossChild) on a lazyfs mount, which keeps every file's data in
// memory until the file is fsync'ed or fdatasync'ed. The child commits
// mail from several goroutines and prints each acknowledged ID (a Commit
// that returned nil: an SMTP session would answer 250) while a deliverer
// defers most attempts with a short backoff (so meta/ID.json is rewritten
// all the time) and accepts some (so files are removed, tombstoned and
// recycled through spare/). The parent kills it with SIGKILL in the middle
// of that, drops every unsynced write (lazyfs.Crash, a power loss), opens
// the spool (recovery), and checks every acknowledged message that was not
// delivered: it must be there, with its body intact. Then it starts the
// child again on the same spool, and again, for powerLossCuts cuts.

const powerLossCuts = 5

type powerLossResult struct {
	acked, sent, lost int
	lostIDs           []string
}

// TestPowerLoss: in the flush mode auto chooses on FUSE (fdatasync),
// nothing acknowledged is lost over powerLossCuts power cuts.
func TestPowerLoss(t *testing.T) {
	l := powerLossFS(t)
	res := runPowerLoss(t, l, FlushAuto, powerLossCuts, false)
	t.Logf("%d cuts: %d acknowledged, %d delivered, %d lost", powerLossCuts, res.acked, res.sent, res.lost)
	if res.lost != 0 {
		t.Errorf("lost %d acknowledged messages, the first: %v", res.lost, res.lostIDs[:min(len(res.lostIDs), 10)])
	}
	if res.acked < powerLossCuts*20 {
		t.Errorf("only %d messages acknowledged: the test did not load the queue", res.acked)
	}
}

// TestPowerLossHarnessCatchesSyncfs proves the harness can fail: with the
// flush forced to syncfs (the old behaviour everywhere), which a FUSE
// server never sees, acknowledged mail is lost.
func TestPowerLossHarnessCatchesSyncfs(t *testing.T) {
	l := powerLossFS(t)
	res := runPowerLoss(t, l, FlushSyncfs, powerLossCuts, true)
	t.Logf("syncfs forced: %d acknowledged, %d lost", res.acked, res.lost)
	if res.lost == 0 {
		t.Errorf("syncfs on a FUSE filesystem lost nothing in %d cuts (%d acknowledged): the harness does not model a power loss", powerLossCuts, res.acked)
	}
}

// powerCutter is a filesystem that can drop its unsynced writes.
type powerCutter interface {
	Root() string
	Crash() int // files that lost data, -1 if unknown
}

type inProcess struct{ *lazyfs.FS }

func (l inProcess) Root() string { return l.Dir }

// realLazyFS is a mount of the real LazyFS (github.com/dsrhaslab/lazyfs),
// for cross-checking the harness: RELAYD_LAZYFS_MOUNT names the mount,
// RELAYD_LAZYFS_FIFO its faults FIFO (config [faults] fifo_path).
type realLazyFS struct{ mount, fifo string }

func (l realLazyFS) Root() string { return l.mount }

func (l realLazyFS) Crash() int {
	f, err := os.OpenFile(l.fifo, os.O_WRONLY, 0)
	if err != nil {
		panic(err)
	}
	f.Write([]byte("lazyfs::clear-cache\n"))
	f.Close()
	time.Sleep(500 * time.Millisecond) // LazyFS applies it asynchronously
	return -1
}

// powerLossFS is the in-process lazyfs, or a real LazyFS mount when
// RELAYD_LAZYFS_MOUNT is set (each test then uses a directory of its own).
func powerLossFS(t *testing.T) powerCutter {
	if m := os.Getenv("RELAYD_LAZYFS_MOUNT"); m != "" {
		dir := filepath.Join(m, t.Name())
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return realLazyFS{mount: dir, fifo: os.Getenv("RELAYD_LAZYFS_FIFO")}
	}
	return inProcess{lazyfs.MountForTest(t)}
}

func runPowerLoss(t *testing.T, l powerCutter, mode string, cuts int, stopAtLoss bool) powerLossResult {
	dir := filepath.Join(l.Root(), "spool")
	acked := map[string]int{} // ID -> body seed
	sent := map[string]bool{}
	var res powerLossResult
	for cut := range cuts {
		target := 30 + rand.IntN(40)
		newAcked, newSent := runPowerLossChild(t, dir, mode, target)
		for id, seed := range newAcked {
			acked[id] = seed
		}
		for id := range newSent {
			sent[id] = true
		}
		dropped := l.Crash()
		lost := checkSpool(t, dir, acked, sent)
		t.Logf("cut %d: %d acknowledged this run, %d files lost unsynced data, %d acknowledged messages lost", cut+1, len(newAcked), dropped, len(lost))
		res.lost += len(lost)
		res.lostIDs = append(res.lostIDs, lost...)
		// A lost message counts once.
		for _, id := range lost {
			delete(acked, id)
		}
		if stopAtLoss && res.lost > 0 {
			break
		}
	}
	res.acked = 0
	for range acked {
		res.acked++
	}
	res.acked += res.lost
	res.sent = len(sent)
	return res
}

// runPowerLossChild runs the child until it acknowledged target messages
// during deferred-mail updates, then kills it with SIGKILL.
func runPowerLossChild(t *testing.T, dir, mode string, target int) (acked map[string]int, sent map[string]bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPowerLossChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RELAYD_POWERLOSS_DIR="+dir, "RELAYD_POWERLOSS_FLUSH="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	acked, sent = map[string]int{}, map[string]bool{}
	tries := 0
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	sc := bufio.NewScanner(out)
	for sc.Scan() { // until EOF: what the child printed before the kill counts
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "ACK":
			seed, _ := strconv.Atoi(f[2])
			acked[f[1]] = seed
		case len(f) == 2 && f[0] == "SENT":
			sent[f[1]] = true
		case len(f) == 2 && f[0] == "TRY":
			tries++
		}
		if !killed && len(acked) >= target && tries >= target {
			// The cut: mid-commit and mid-update.
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		killed = true
		t.Fatalf("child ended before the cut (%d acknowledged, %d tries)", len(acked), tries)
	}
	return acked, sent
}

// checkSpool opens the spool after a crash (recovery) and returns the
// acknowledged, undelivered messages that are missing or damaged.
func checkSpool(t *testing.T, dir string, acked map[string]int, sent map[string]bool) []string {
	t.Helper()
	q, err := Open(Config{Dir: dir, Flush: FlushFdatasync})
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	defer q.Close()
	var lost []string
	for id, seed := range acked {
		if sent[id] {
			continue
		}
		m, err := loadMessage(dir, id)
		if err != nil {
			t.Logf("lost %s: %v", id, err)
			lost = append(lost, id)
			continue
		}
		rc, err := openMessage(q.bodyPath(id), m.Prefix, m.Size-int64(len(m.Prefix)))
		if err != nil {
			t.Logf("lost %s: %v", id, err)
			lost = append(lost, id)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, append([]byte("Received: test\r\n"), powerLossBody(seed)...)) {
			t.Logf("lost %s: body damaged (%d bytes, %v)", id, len(got), err)
			lost = append(lost, id)
		}
	}
	return lost
}

func powerLossBody(seed int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Subject: power loss %d\r\n\r\n", seed)
	line := fmt.Sprintf("%08d the quick brown fox jumps over the lazy dog\r\n", seed)
	for range 20 + seed%100 {
		b.WriteString(line)
	}
	return b.Bytes()
}

// TestPowerLossChild is the child of the power-loss tests; it does nothing
// unless started by them.
func TestPowerLossChild(t *testing.T) {
	dir := os.Getenv("RELAYD_POWERLOSS_DIR")
	if dir == "" {
		t.Skip("started only by TestPowerLoss")
	}
	mode := os.Getenv("RELAYD_POWERLOSS_FLUSH")
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", a...)
		mu.Unlock()
	}
	del := powerLossDeliverer{say: say}
	q, err := Open(Config{Dir: dir, Flush: mode, FlushForce: mode == FlushSyncfs,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Concurrency: 4,
		Deliverer: &del})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	go q.Run(ctx)
	var seq atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for ctx.Err() == nil && seq.Load() < 5000 {
				seed := int(seq.Add(1)) + rand.IntN(1000)*10000
				d, err := q.Create()
				if err != nil {
					t.Error(err)
					return
				}
				d.Write(powerLossBody(seed))
				if err := d.Commit(ctx, Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example", "b@y.example")}, []byte("Received: test\r\n"), FromSMTP); err != nil {
					t.Error(err)
					return
				}
				say("ACK %s %d", d.ID(), seed)
			}
		})
	}
	wg.Wait()
}

// powerLossDeliverer defers four attempts in five, accepts the rest.
type powerLossDeliverer struct{ say func(string, ...any) }

func (p *powerLossDeliverer) Deliver(ctx context.Context, d *Delivery) (Outcome, error) {
	p.say("TRY %s", d.ID)
	out := Outcome{Relay: "smart.example[192.0.2.1]:587", Rcpts: make([]*smtp.SMTPError, len(d.Rcpts))}
	if rand.IntN(5) == 0 {
		p.say("SENT %s", d.ID)
		return out, nil
	}
	for i := range out.Rcpts {
		out.Rcpts[i] = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
	}
	return out, nil
}
