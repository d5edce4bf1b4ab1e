package e2e

// Operator features against the real binary: queue commands over the
// control socket, live reload (under load, and refused), systemd readiness
// notifications, Prometheus metrics, the outbound rate limit, smarthost
// failover and JSON logs.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"relayd/internal/smtptest"
)

// cli runs "relayd ARGS..." and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "RELAYD_CONFIG=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("relayd %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// editConfig inserts text after the first line equal to after (e.g. a table
// header) in the config file.
func editConfig(t *testing.T, path, after, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, after+"\n") {
		t.Fatalf("config has no line %q:\n%s", after, s)
	}
	s = strings.Replace(s, after+"\n", after+"\n"+text, 1)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

type jsonEntry struct {
	ID         string    `json:"id"`
	Size       int64     `json:"size"`
	Arrival    time.Time `json:"arrival"`
	Sender     string    `json:"sender"`
	Held       bool      `json:"held"`
	Attempts   int       `json:"attempts"`
	NextTry    time.Time `json:"next_attempt"`
	Recipients []struct {
		Address   string `json:"address"`
		State     string `json:"state"`
		LastReply string `json:"last_reply"`
	} `json:"recipients"`
}

func listJSON(t *testing.T, r *relayd) []jsonEntry {
	t.Helper()
	out, errs, code := cli(t, "queue", "list", "--json", "--config", r.config)
	if code != 0 {
		t.Fatalf("queue list --json: exit %d: %s", code, errs)
	}
	var l []jsonEntry
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("queue list --json does not parse: %v\n%s", err, out)
	}
	return l
}

func TestOperatorQueueCommands(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{RcptReply: func(string) *smtp.SMTPError { return smtptest.Reply451() }})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `status=deferred`, 20*time.Second)

	// list: the deferred message with its last reply, text and JSON.
	l := listJSON(t, r)
	if len(l) != 1 {
		t.Fatalf("list: %d entries, want 1", len(l))
	}
	e := l[0]
	if e.ID == "" || e.Sender != "app@example.com" || e.Size <= 0 || e.Arrival.IsZero() || e.Attempts < 1 ||
		len(e.Recipients) != 1 || e.Recipients[0].Address != "bob@example.org" || e.Recipients[0].State != "pending" ||
		!strings.HasPrefix(e.Recipients[0].LastReply, "451 4.3.0") {
		t.Fatalf("list --json entry: %+v", e)
	}
	id := e.ID
	out, _, code := cli(t, "queue", "list", "--config", r.config)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "(451 4.3.0") || !strings.Contains(out, "bob@example.org [pending]") {
		t.Fatalf("queue list (exit %d):\n%s", code, out)
	}
	// mailq is the same command.
	mailq := filepath.Join(dir, "mailq")
	if err := os.Symlink(binary, mailq); err == nil {
		c := exec.Command(mailq, "--config", r.config)
		c.Env = append(os.Environ(), "RELAYD_CONFIG=")
		if mo, err := c.Output(); err != nil || !strings.Contains(string(mo), id) {
			t.Errorf("mailq: %v\n%s", err, mo)
		}
	}

	// show: envelope, state, headers.
	out, _, code = cli(t, "queue", "show", "--config", r.config, id)
	for _, want := range []string{id, `"from": "app@example.com"`, `"state": "pending"`, "451 4.3.0", "Subject: e2e", "Received: from app.test"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("queue show lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	if strings.Contains(out, "hello from the test") {
		t.Errorf("queue show printed the body:\n%s", out)
	}

	// hold: the smarthost accepts again, but a held message is never attempted.
	if _, errs, code := cli(t, "queue", "hold", "--config", r.config, id); code != 0 {
		t.Fatalf("hold: exit %d: %s", code, errs)
	}
	attempts := listJSON(t, r)[0].Attempts
	sh.SetFaults(smtptest.Faults{})
	time.Sleep(5 * time.Second) // backoff is 1-2 s: several periods
	if n := len(sh.Messages()); n != 0 {
		t.Fatalf("held message delivered (%d messages)", n)
	}
	l = listJSON(t, r)
	if len(l) != 1 || !l[0].Held || l[0].Attempts != attempts {
		t.Fatalf("after hold: %+v (attempts before %d)", l, attempts)
	}
	out, _, _ = cli(t, "queue", "list", "--config", r.config)
	if !strings.Contains(out, id+"!") {
		t.Errorf("held mark missing:\n%s", out)
	}

	// release: due again, delivered.
	if _, errs, code := cli(t, "queue", "release", "--config", r.config, id); code != 0 {
		t.Fatalf("release: exit %d: %s", code, errs)
	}
	sh.WaitMessages(t, 1, 10*time.Second)
	r.waitLog(t, `id=`+id+` .*status=sent`, 10*time.Second)

	// flush: with a 10-minute backoff (restart to change it), a deferred
	// message goes out at once when flushed.
	r.stop()
	b, _ := os.ReadFile(r.config)
	s := strings.Replace(strings.Replace(string(b), `min_backoff = "1s"`, `min_backoff = "10m"`, 1), `max_backoff = "2s"`, `max_backoff = "1h"`, 1)
	os.WriteFile(r.config, []byte(s), 0o644)
	r.start()
	sh.SetFaults(smtptest.Faults{RcptReply: func(string) *smtp.SMTPError { return smtptest.Reply451() }})
	if err := r.send(t, "app@example.com", []string{"dave@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `to=dave@example.org .*status=deferred`, 20*time.Second)
	sh.SetFaults(smtptest.Faults{})
	l = listJSON(t, r)
	if len(l) != 1 || l[0].NextTry.Before(time.Now().Add(5*time.Minute)) {
		t.Fatalf("deferred message: %+v", l)
	}
	if out, errs, code := cli(t, "queue", "flush", "--config", r.config); code != 0 || !strings.Contains(out, "1 message") {
		t.Fatalf("flush: exit %d: %s%s", code, out, errs)
	}
	sh.WaitMessages(t, 2, 10*time.Second)

	// delete: removed without a notice.
	sh.SetFaults(smtptest.Faults{RcptReply: func(string) *smtp.SMTPError { return smtptest.Reply451() }})
	if err := r.send(t, "app@example.com", []string{"carol@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	r.waitLog(t, `to=carol@example.org .*status=deferred`, 20*time.Second)
	l = listJSON(t, r)
	if len(l) != 1 {
		t.Fatalf("list: %+v", l)
	}
	id2 := l[0].ID
	if out, errs, code := cli(t, "queue", "delete", "--config", r.config, id2); code != 0 || !strings.Contains(out, "1 message") {
		t.Fatalf("delete: exit %d: %s%s", code, out, errs)
	}
	r.waitLog(t, `id=`+id2+` status=deleted`, 10*time.Second)
	if l := listJSON(t, r); len(l) != 0 {
		t.Fatalf("after delete: %+v", l)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool", "msg", id2)); !os.IsNotExist(err) {
		t.Errorf("body of a deleted message: %v", err)
	}
	time.Sleep(2 * time.Second)
	if strings.Contains(r.logs(), "status=bounced") || len(sh.Messages()) != 2 {
		t.Errorf("delete sent a notice or mail:\n%s", r.logs())
	}

	// No daemon: every command that needs it says so and exits 75.
	r.stop()
	c := r.config
	for _, args := range [][]string{{"queue", "flush", "--config", c}, {"queue", "delete", "--config", c, id2},
		{"queue", "hold", "--config", c, id2}, {"queue", "release", "--config", c, id2}, {"reload", "--config", c}} {
		_, errs, code := cli(t, args...)
		if code != 75 || !strings.Contains(errs, "not running") {
			t.Errorf("relayd %v without daemon: exit %d, stderr %q", args, code, errs)
		}
	}
	// Listing reads the spool directly.
	if _, errs, code := cli(t, "queue", "list", "--config", r.config); code != 0 {
		t.Errorf("list without daemon: exit %d: %s", code, errs)
	}
}

func TestReloadUnderLoad(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	const total, workers = 500, 4
	var sent atomic.Int32
	var refused []error
	var mu sync.Mutex
	reloadAt := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				c, err := smtp.Dial(r.addr)
				if err == nil {
					msg := fmt.Sprintf("From: app@example.com\r\nTo: bob@example.org\r\nSubject: load %d\r\n\r\nbody %d\r\n", i, i)
					if err = c.Hello("app.test"); err == nil {
						err = c.SendMail("app@example.com", []string{"bob@example.org"}, strings.NewReader(msg))
					}
					c.Close()
				}
				if err != nil {
					mu.Lock()
					refused = append(refused, err)
					mu.Unlock()
				}
				if sent.Add(1) == total/3 {
					close(reloadAt)
				}
			}
		}()
	}
	<-reloadAt
	// The ISP changed the password: the old one stops working, the admin
	// writes the new one and sends SIGHUP while clients keep sending.
	if err := os.WriteFile(filepath.Join(dir, "smarthost.secret"), []byte("n3w pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// From here on the smarthost accepts only the new password, so every
	// message on a connection opened later was sent with it.
	connsAtChange, loginsAtChange := sh.Conns(), sh.Logins()
	sh.SetUsers(map[string]string{"relayuser": "n3w pass"})
	r.cmd.Process.Signal(syscall.SIGHUP)
	r.waitLog(t, `configuration reloaded`, 20*time.Second)
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("%d submissions refused during reload, first: %v", len(refused), refused[0])
	}
	msgs := sh.WaitMessages(t, total, 180*time.Second)
	seen := map[string]bool{}
	after := 0
	for _, m := range msgs {
		if i := bytes.Index(m.Data, []byte("Subject: load ")); i >= 0 {
			seen[string(m.Data[i:i+20])] = true
		}
		if m.Conn > connsAtChange {
			after++
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct messages delivered, want %d", len(seen), total)
	}
	if after == 0 || sh.Logins() <= loginsAtChange {
		t.Errorf("no delivery with the new password after the reload (after=%d logins %d -> %d)", after, loginsAtChange, sh.Logins())
	}
	t.Logf("%d of %d messages delivered with the new password", after, total)
	logs := r.logs()
	for _, bad := range []string{"status=failed", "status=bounced", "status=expired", "listener failed"} {
		if strings.Contains(logs, bad) {
			t.Errorf("log has %s", bad)
		}
	}
}

func TestReloadBrokenConfigKeepsOldOne(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	r := start(t, dir, cfg)
	good, _ := os.ReadFile(cfg)

	// Two problems conf finds (SIGHUP): every one is logged.
	editConfig(t, cfg, "[upstream]", "tls = \"sometimes\"\nmax_per_minute = -1\n")
	r.cmd.Process.Signal(syscall.SIGHUP)
	r.waitLog(t, `reload rejected, keeping the running configuration`, 20*time.Second)
	if n := strings.Count(r.logs(), "reload rejected: config problem"); n < 2 {
		t.Errorf("%d problems logged, want every one (2):\n%s", n, r.logs())
	}

	// Two problems only the daemon finds (a missing DKIM key, a missing CA
	// file): "relayd reload" exits non-zero and prints both.
	os.WriteFile(cfg, good, 0o644)
	editConfig(t, cfg, "[upstream]", "")
	b, _ := os.ReadFile(cfg)
	s := regexp.MustCompile(`ca_file = ".*"`).ReplaceAllString(string(b), `ca_file = "`+filepath.Join(dir, "nope.pem")+`"`)
	s += "\n[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey_file = \"" + filepath.Join(dir, "missing.key") + "\"\n"
	os.WriteFile(cfg, []byte(s), 0o644)
	_, errs, code := cli(t, "reload", "--config", cfg)
	if code == 0 || !strings.Contains(errs, "nope.pem") || !strings.Contains(errs, "missing.key") {
		t.Fatalf("relayd reload with a broken config: exit %d, stderr:\n%s", code, errs)
	}

	// Still running on the old config: mail flows with the old settings.
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	sh.WaitMessages(t, 1, 20*time.Second)
	os.WriteFile(cfg, good, 0o644)
	if out, errs, code := cli(t, "reload", "--config", cfg); code != 0 {
		t.Fatalf("good reload: exit %d: %s%s", code, out, errs)
	}
}

func TestSystemdNotify(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	msgs := make(chan string, 32)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := pc.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, want) {
				t.Fatalf("sd_notify %q, want %q", m, want)
			}
			return m
		case <-time.After(30 * time.Second):
			t.Fatalf("no sd_notify %q", want)
		}
		return ""
	}
	t.Setenv("NOTIFY_SOCKET", sock)
	r := start(t, dir, writeConfig(t, dir, sh, "", ""))
	next("READY=1")
	r.cmd.Process.Signal(syscall.SIGHUP)
	m := next("RELOADING=1")
	if !regexp.MustCompile(`(?m)^MONOTONIC_USEC=[1-9][0-9]*$`).MatchString(m) {
		t.Errorf("RELOADING without MONOTONIC_USEC: %q", m)
	}
	next("READY=1")
	r.stop()
	next("STOPPING=1")
}

func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// metricValue sums the series of name matching the label pairs (histograms:
// sample count); -1 when the family is missing.
func metricValue(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestMetricsMatchSmarthost(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{RcptReply: func(rcpt string) *smtp.SMTPError {
		if strings.HasPrefix(rcpt, "nobody@") {
			return smtptest.Reply550()
		}
		return nil
	}})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "\n[metrics]\nlisten = \"127.0.0.1:0\"\n")
	editConfig(t, cfg, "[listen]", "max_message_bytes = 4000\n")
	r := start(t, dir, cfg)
	m := regexp.MustCompile(`msg=listening addr=(\S+) mode=metrics`).FindStringSubmatch(r.logs())
	if m == nil {
		t.Fatalf("no metrics listener:\n%s", r.logs())
	}
	const good = 8
	for i := range good {
		to := []string{"bob@example.org"}
		if i%2 == 0 {
			to = append(to, "carol@example.org")
		}
		if err := r.send(t, "app@example.com", to, plainMsg); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.send(t, "app@example.com", []string{"nobody@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	big := plainMsg + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 80)
	if err := r.send(t, "app@example.com", []string{"bob@example.org"}, big); code(err) != 552 {
		t.Fatalf("oversized message: %v, want 552", err)
	}
	// good messages + the failure notice for nobody@.
	msgs := sh.WaitMessages(t, good+1, 30*time.Second)
	var mf map[string]*dto.MetricFamily
	for i := 0; i < 100; i++ { // until the queue is empty and the last line logged
		mf = scrapeMetrics(t, m[1])
		if metricValue(mf, "relayd_queue_messages") == 0 && metricValue(mf, "relayd_bounces_total") == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rcpts := 0
	for _, msg := range msgs {
		rcpts += len(msg.To)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"relayd_messages_accepted_total", nil, good + 2}, // + nobody@ + its notice
		{"relayd_recipients_total", []string{"status", "sent"}, float64(rcpts)},
		{"relayd_recipients_total", []string{"status", "failed"}, 1},
		{"relayd_recipients_total", []string{"status", "deferred"}, 0},
		{"relayd_recipients_total", []string{"status", "expired"}, 0},
		{"relayd_bounces_total", []string{"kind", "failed"}, 1},
		{"relayd_messages_rejected_total", []string{"reason", "size"}, 1},
		{"relayd_delivery_delay_seconds", nil, float64(rcpts)},
		{"relayd_smarthost_attempt_seconds", []string{"result", "ok"}, float64(len(msgs) + 1)},
		{"relayd_smarthost_connection_failures_total", nil, 0},
		{"relayd_smarthost_auth_failures_total", nil, 0},
		{"relayd_queue_messages", nil, 0},
		{"relayd_queue_oldest_message_age_seconds", nil, 0},
		{"relayd_build_info", nil, 1},
	} {
		if got := metricValue(mf, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestRateLimitSpreadsDelivery(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "", "")
	editConfig(t, cfg, "[upstream]", "max_per_minute = 60\n")
	r := start(t, dir, cfg)
	const n = 30
	for i := range n {
		if err := r.send(t, "app@example.com", []string{fmt.Sprintf("r%d@example.org", i)}, plainMsg); err != nil {
			t.Fatalf("message %d refused: %v", i, err)
		}
	}
	msgs := sh.WaitMessages(t, n, 120*time.Second)
	var at []time.Time
	for _, m := range msgs {
		at = append(at, m.At)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	// One per second, with a generous margin: never 3 within 1.5 s.
	for i := 0; i+2 < len(at); i++ {
		if d := at[i+2].Sub(at[i]); d < 1500*time.Millisecond {
			t.Errorf("messages %d..%d arrived within %v", i, i+2, d)
		}
	}
	if span := at[len(at)-1].Sub(at[0]); span < 25*time.Second {
		t.Errorf("30 messages in %v at 60/min", span)
	}
	logs := r.logs()
	if !strings.Contains(logs, "outbound rate limit reached") {
		t.Errorf("no rate-limit log line")
	}
	for _, bad := range []string{"status=failed", "status=bounced", "status=rejected", "status=deferred"} {
		if strings.Contains(logs, bad) {
			t.Errorf("log has %s", bad)
		}
	}
}

func TestFailoverToFallbackAndBack(t *testing.T) {
	primary := smarthost(t, smtptest.Faults{})
	leaf := primary.CA().Leaf(t, "localhost", "127.0.0.1")
	fallback := smtptest.New(t, smtptest.Options{RequireTLS: true, Cert: &leaf,
		Users: map[string]string{"relayuser": "s3cret pass"}})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, primary, "", "")
	editConfig(t, cfg, "[upstream]", fmt.Sprintf("fallback = [%q]\n", fallback.Addr()))
	r := start(t, dir, cfg)

	primary.Stop()
	if err := r.send(t, "app@example.com", []string{"first@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	fallback.WaitMessages(t, 1, 20*time.Second)
	_, fport, _ := net.SplitHostPort(fallback.Addr())
	r.waitLog(t, `to=first@example\.org relay=\S*:`+fport+` status=sent`, 10*time.Second)

	primary.Start()
	if err := r.send(t, "app@example.com", []string{"second@example.org"}, plainMsg); err != nil {
		t.Fatal(err)
	}
	primary.WaitMessages(t, 1, 20*time.Second)
	_, pport, _ := net.SplitHostPort(primary.Addr())
	r.waitLog(t, `to=second@example\.org relay=\S*:`+pport+` status=sent`, 10*time.Second)
	if n := len(fallback.Messages()); n != 1 {
		t.Errorf("fallback got %d messages, want 1", n)
	}
}

func TestJSONLog(t *testing.T) {
	sh := smarthost(t, smtptest.Faults{})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, sh, "[log]\nformat = \"json\"\n", "")
	cmd := exec.Command(binary, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), "RELAYD_CONFIG=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	lines := make(chan map[string]any, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"unparsed": sc.Text()}
			}
			lines <- m
		}
		io.Copy(io.Discard, stderr)
	}()
	wait := func(match func(map[string]any) bool) map[string]any {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatal("relayd exited")
				}
				if u, ok := m["unparsed"]; ok {
					t.Errorf("log line is not JSON: %v", u)
				}
				if match(m) {
					return m
				}
			case <-timeout:
				t.Fatal("log line never came")
			}
		}
	}
	l := wait(func(m map[string]any) bool { return m["msg"] == "listening" && m["mode"] == "smtp" })
	addr, _ := l["addr"].(string)
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("app@example.com", []string{"bob@example.org"}, strings.NewReader(plainMsg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	m := wait(func(m map[string]any) bool { return m["msg"] == "mail" && m["status"] == "sent" })
	if id, _ := m["id"].(string); id == "" || m["from"] != "<app@example.com>" || m["to"] != "bob@example.org" ||
		m["relay"] == nil || m["dsn"] != "2.0.0" {
		t.Errorf("JSON mail line: %v", m)
	}
}
