package sendmail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/sysexits"
)

// received is one message a test daemon accepted.
type received struct {
	From   string
	Rcpts  []string
	Notify []string
	Data   []byte
}

// fakeDaemon is a go-smtp server on STATE_DIR/public/submit.sock that
// records what arrives; failRcpt / failData make it answer with an error.
type fakeDaemon struct {
	mu       sync.Mutex
	got      []received
	failRcpt *smtp.SMTPError
	failData *smtp.SMTPError
	aborted  int // DATA streams that ended without the final dot
}

type fakeSession struct {
	d   *fakeDaemon
	cur received
}

func (s *fakeSession) Reset()        { s.cur = received{} }
func (s *fakeSession) Logout() error { return nil }
func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur = received{From: from}
	return nil
}
func (s *fakeSession) Rcpt(to string, o *smtp.RcptOptions) error {
	if s.d.failRcpt != nil {
		return s.d.failRcpt
	}
	s.cur.Rcpts = append(s.cur.Rcpts, to)
	for _, n := range o.Notify {
		s.cur.Notify = append(s.cur.Notify, string(n))
	}
	return nil
}
func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		s.d.mu.Lock()
		s.d.aborted++
		s.d.mu.Unlock()
		return err
	}
	if s.d.failData != nil {
		return s.d.failData
	}
	s.cur.Data = b
	s.d.mu.Lock()
	s.d.got = append(s.d.got, s.cur)
	s.d.mu.Unlock()
	return nil
}

func (d *fakeDaemon) messages() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.got...)
}

// newStateDir makes a short state dir (unix socket paths are limited to
// 108 bytes) with public/ and a maildrop/ of mode 1733.
func newStateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"public", "maildrop"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "maildrop"), 0o1733); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startDaemon(t *testing.T, stateDir string) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &fakeSession{d: d}, nil
	}))
	srv.Domain = "test"
	srv.EnableDSN = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("unix", SocketPath(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return d
}

func dropFiles(t *testing.T, stateDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(DropDir(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

const testMsg = "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\n\r\nline\r\n.leading dot\r\n\r\nend\r\n"

func TestSubmitSocket(t *testing.T) {
	st := newStateDir(t)
	d := startDaemon(t, st)
	s := &Submitter{StateDir: st, Timeout: 10 * time.Second}
	env := Envelope{From: "a@example.com", Rcpts: []string{"b@example.com", "c@example.org"}, Notify: "FAILURE,DELAY"}
	if err := s.Submit(context.Background(), env, strings.NewReader(testMsg)); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	got := d.messages()
	if len(got) != 1 {
		t.Fatalf("daemon got %d messages", len(got))
	}
	want := received{From: env.From, Rcpts: env.Rcpts, Notify: []string{"FAILURE", "DELAY", "FAILURE", "DELAY"}, Data: []byte(testMsg)}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("got %+v\nwant %+v", got[0], want)
	}
	if len(dropFiles(t, st)) != 0 {
		t.Error("maildrop used although the daemon runs")
	}
}

// A bare local name is qualified with @localhost on the socket.
func TestSubmitNullSender(t *testing.T) {
	st := newStateDir(t)
	d := startDaemon(t, st)
	s := &Submitter{StateDir: st}
	if err := s.Submit(context.Background(), Envelope{Rcpts: []string{"root"}}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if got := d.messages(); len(got) != 1 || got[0].From != "" || got[0].Rcpts[0] != "root@localhost" {
		t.Errorf("got %+v", got)
	}
}

func TestSubmitDaemonErrors(t *testing.T) {
	tests := []struct {
		name      string
		rcpt, dat *smtp.SMTPError
		code      int
	}{
		// A 4xx sends the message to the maildrop (exit 0).
		{"4xx at RCPT", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}, nil, sysexits.OK},
		{"4xx at DATA", nil, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "disk full"}, sysexits.OK},
		{"5xx at RCPT", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, nil, sysexits.NoUser},
		{"5xx at DATA", nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "policy"}, sysexits.Unavailable},
		{"bad content at DATA", nil, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "bare CR"}, sysexits.DataErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStateDir(t)
			d := startDaemon(t, st)
			d.failRcpt, d.failData = tt.rcpt, tt.dat
			s := &Submitter{StateDir: st}
			err := s.Submit(context.Background(), Envelope{From: "a@example.com", Rcpts: []string{"b@example.com"}}, strings.NewReader(testMsg))
			if ExitCode(err) != tt.code {
				t.Fatalf("err %v: code %d, want %d", err, ExitCode(err), tt.code)
			}
			want := 0
			if tt.code == sysexits.OK {
				want = 1
			}
			if n := dropFiles(t, st); len(n) != want {
				t.Errorf("maildrop holds %q, want %d files (a 5xx is final, a 4xx falls back)", n, want)
			}
		})
	}
}

func TestSubmitMaildropFallback(t *testing.T) {
	for _, how := range []string{"socket missing", "connection refused"} {
		t.Run(how, func(t *testing.T) {
			st := newStateDir(t)
			if how == "connection refused" {
				// A stale socket file with no listener: ECONNREFUSED.
				l, err := net.Listen("unix", SocketPath(st))
				if err != nil {
					t.Fatal(err)
				}
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				l.Close()
			}
			var verbose bytes.Buffer
			s := &Submitter{StateDir: st, Stderr: &verbose}
			env := Envelope{From: "", Rcpts: []string{"root", "x@example.com"}, Notify: "NEVER", Ret: "HDRS", EnvID: "abc"}
			if err := s.Submit(context.Background(), env, strings.NewReader(testMsg)); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			names := dropFiles(t, st)
			if len(names) != 1 || strings.HasPrefix(names[0], ".") {
				t.Fatalf("maildrop holds %q", names)
			}
			if !strings.Contains(verbose.String(), names[0]) {
				t.Errorf("verbose output does not name the file: %q", verbose.String())
			}
			fi, err := os.Stat(filepath.Join(DropDir(st), names[0]))
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v (%v), want 0644", fi.Mode(), err)
			}
			gotEnv, msg := readDropFile(t, filepath.Join(DropDir(st), names[0]))
			if gotEnv.Submitted.IsZero() || gotEnv.UID != os.Getuid() {
				t.Errorf("submitted %v uid %d", gotEnv.Submitted, gotEnv.UID)
			}
			gotEnv.Submitted, gotEnv.UID = time.Time{}, 0
			if !reflect.DeepEqual(gotEnv, env) {
				t.Errorf("envelope %+v, want %+v", gotEnv, env)
			}
			if msg != testMsg {
				t.Errorf("message %q, want %q", msg, testMsg)
			}
		})
	}
}

func readDropFile(t *testing.T, path string) (Envelope, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env, r, err := ReadDrop(f)
	if err != nil {
		t.Fatalf("ReadDrop(%s): %v", path, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return env, string(b)
}

func TestMaildropHundred(t *testing.T) {
	st := newStateDir(t)
	s := &Submitter{StateDir: st}
	for i := range 100 {
		body := testMsg + strings.Repeat("z", i) + "\r\n"
		env := Envelope{From: "a@example.com", Rcpts: []string{"b@example.com"}, EnvID: "n" + string(rune('A'+i%26))}
		if err := s.Submit(context.Background(), env, strings.NewReader(body)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	names := dropFiles(t, st)
	if len(names) != 100 {
		t.Fatalf("%d files in maildrop, want 100", len(names))
	}
	seen := map[int]bool{}
	for _, n := range names {
		_, msg := readDropFile(t, filepath.Join(DropDir(st), n))
		if !strings.HasPrefix(msg, testMsg) {
			t.Fatalf("%s: bad message", n)
		}
		seen[len(msg)-len(testMsg)-2] = true
	}
	if len(seen) != 100 {
		t.Errorf("only %d distinct messages read back", len(seen))
	}
}

func TestSizeLimitNothingQueued(t *testing.T) {
	big := testMsg + strings.Repeat("x", 5000) + "\r\n"
	t.Run("socket", func(t *testing.T) {
		st := newStateDir(t)
		d := startDaemon(t, st)
		s := &Submitter{StateDir: st, MaxBytes: 1000}
		err := s.Submit(context.Background(), Envelope{From: "a@b", Rcpts: []string{"c@d"}}, strings.NewReader(big))
		if ExitCode(err) != sysexits.Unavailable || !strings.Contains(err.Error(), "too big") {
			t.Fatalf("err %v, want 69 too big", err)
		}
		// The message is staged before the socket is tried: the daemon
		// never sees it, and nothing is left in the maildrop.
		if got := d.messages(); len(got) != 0 {
			t.Errorf("daemon queued %d messages", len(got))
		}
		if n := dropFiles(t, st); len(n) != 0 {
			t.Errorf("maildrop holds %q after a refused message", n)
		}
	})
	t.Run("maildrop", func(t *testing.T) {
		st := newStateDir(t)
		s := &Submitter{StateDir: st, MaxBytes: 1000}
		err := s.Submit(context.Background(), Envelope{From: "a@b", Rcpts: []string{"c@d"}}, strings.NewReader(big))
		if ExitCode(err) != sysexits.Unavailable {
			t.Fatalf("err %v, want 69", err)
		}
		if n := dropFiles(t, st); len(n) != 0 {
			t.Errorf("maildrop holds %q after a refused message", n)
		}
	})
}

// Whatever keeps the daemon from taking the message — any dial error, a
// daemon that never greets, a 421 greeting (too many connections), a
// connection cut after the final dot before the reply — commits the staged
// message to the maildrop: a local submission is never lost.
func TestSubmitFallsBackToMaildrop(t *testing.T) {
	serve := func(t *testing.T, st string, handle func(c net.Conn)) {
		l, err := net.Listen("unix", SocketPath(st))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); handle(c) }()
			}
		}()
	}
	tests := map[string]func(t *testing.T, st string) *Submitter{
		"dial error": func(t *testing.T, st string) *Submitter {
			return &Submitter{StateDir: st, Dial: func(context.Context, string) (net.Conn, error) {
				return nil, errors.New("permission denied")
			}}
		},
		"never greets": func(t *testing.T, st string) *Submitter {
			serve(t, st, func(c net.Conn) { io.Copy(io.Discard, c) })
			return &Submitter{StateDir: st, Timeout: 200 * time.Millisecond}
		},
		"421 greeting": func(t *testing.T, st string) *Submitter {
			serve(t, st, func(c net.Conn) { io.WriteString(c, "421 4.7.0 Too many connections, try again later\r\n") })
			return &Submitter{StateDir: st}
		},
		"cut after the final dot": func(t *testing.T, st string) *Submitter {
			serve(t, st, func(c net.Conn) {
				br := bufio.NewReader(c)
				io.WriteString(c, "220 test\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch {
					case strings.HasPrefix(line, "DATA"):
						io.WriteString(c, "354 go\r\n")
					case line == ".\r\n":
						return // no reply: ambiguous
					case strings.HasPrefix(line, "EHLO"), strings.HasPrefix(line, "MAIL"), strings.HasPrefix(line, "RCPT"):
						io.WriteString(c, "250 ok\r\n")
					}
				}
			})
			return &Submitter{StateDir: st}
		},
	}
	for name, mk := range tests {
		t.Run(name, func(t *testing.T) {
			st := newStateDir(t)
			s := mk(t, st)
			if err := s.Submit(context.Background(), Envelope{Rcpts: []string{"x"}}, strings.NewReader(testMsg)); err != nil {
				t.Fatalf("Submit: %v (code %d), want the maildrop", err, ExitCode(err))
			}
			names := dropFiles(t, st)
			if len(names) != 1 || strings.HasPrefix(names[0], ".") {
				t.Fatalf("maildrop holds %q, want one committed file", names)
			}
			if _, msg := readDropFile(t, filepath.Join(DropDir(st), names[0])); msg != testMsg {
				t.Errorf("maildrop message %q, want %q", msg, testMsg)
			}
		})
	}
}

// Without a maildrop to stage in, the socket is still used.
func TestSubmitWithoutMaildrop(t *testing.T) {
	st := newStateDir(t)
	d := startDaemon(t, st)
	os.Remove(DropDir(st))
	s := &Submitter{StateDir: st}
	if err := s.Submit(context.Background(), Envelope{Rcpts: []string{"x"}}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if got := d.messages(); len(got) != 1 || string(got[0].Data) != testMsg {
		t.Errorf("daemon got %+v", got)
	}
}

func smtpTempErr() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
}
