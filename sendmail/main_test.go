package sendmail

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"relayd/internal/sysexits"
)

func testDeps(stateDir string) Deps {
	return Deps{
		StateDir:   func(string) (string, error) { return stateDir, nil },
		Getuid:     func() int { return 1234 },
		LookupUser: func(int) (string, error) { return "alice", nil },
		Timeout:    10 * time.Second,
	}
}

func runMain(t *testing.T, argv0 string, args []string, stdin string, deps Deps) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(argv0, args, strings.NewReader(stdin), &out, &errb, deps)
	return code, out.String(), errb.String()
}

func TestMainCronLine(t *testing.T) {
	st := newStateDir(t)
	d := startDaemon(t, st)
	in := "Subject: Cron <root@host> run-parts\nContent-Type: text/plain\n\nout\n.\nmore output\n"
	code, _, stderr := runMain(t, "/usr/sbin/sendmail", []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"}, in, testDeps(st))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := d.messages()
	if len(got) != 1 {
		t.Fatalf("%d messages", len(got))
	}
	want := "Subject: Cron <root@host> run-parts\r\nContent-Type: text/plain\r\nFrom: CronDaemon <alice>\r\n\r\nout\r\n.\r\nmore output\r\n"
	if got[0].From != "alice@localhost" || !reflect.DeepEqual(got[0].Rcpts, []string{"root@localhost"}) || string(got[0].Data) != want {
		t.Errorf("got from %q rcpts %q data %q", got[0].From, got[0].Rcpts, got[0].Data)
	}
}

func TestMainExtractToMaildrop(t *testing.T) {
	st := newStateDir(t) // no daemon: maildrop
	in := "To: bob@example.com\nBcc: eve@example.com\nSubject: php\n\nhello\n"
	code, _, stderr := runMain(t, "sendmail", []string{"-t", "-i", "-f", "app@example.com", "extra@example.com"}, in, testDeps(st))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("maildrop fallback must be silent without -v (cron mails stderr): %q", stderr)
	}
	names := dropFiles(t, st)
	if len(names) != 1 {
		t.Fatalf("maildrop %q", names)
	}
	env, msg := readDropFile(t, filepath.Join(DropDir(st), names[0]))
	if env.From != "app@example.com" || !reflect.DeepEqual(env.Rcpts, []string{"extra@example.com", "bob@example.com", "eve@example.com"}) {
		t.Errorf("envelope %+v", env)
	}
	if strings.Contains(msg, "eve@") {
		t.Errorf("Bcc sent: %q", msg)
	}
}

func TestMainExitCodes(t *testing.T) {
	st := newStateDir(t)
	deps := testDeps(st)
	tests := []struct {
		name  string
		argv0 string
		args  []string
		stdin string
		code  int
	}{
		{"unknown flag", "sendmail", []string{"-Z"}, "", sysexits.Usage},
		{"no recipients", "sendmail", nil, "Subject: x\n\nb\n", sysexits.Usage},
		{"-t but none in headers", "sendmail", []string{"-t"}, "Subject: x\n\nb\n", sysexits.Usage},
		{"injection in -f", "sendmail", []string{"-f", "a\nb", "x"}, "", sysexits.Usage},
		{"newaliases", "/usr/bin/newaliases", nil, "", sysexits.OK},
		{"-bi", "sendmail", []string{"-bi"}, "", sysexits.OK},
		{"header too large", "sendmail", []string{"x"}, strings.Repeat("X: "+strings.Repeat("a", 999)+"\n", 1100), sysexits.DataErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(t, tt.argv0, tt.args, tt.stdin, deps)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if code != 0 && stderr == "" {
				t.Error("failure without a message on stderr")
			}
		})
	}
	if n := dropFiles(t, st); len(n) != 0 {
		t.Errorf("failed submissions left %q in the maildrop", n)
	}
}

func TestMainConfigError(t *testing.T) {
	deps := testDeps("")
	deps.StateDir = func(f string) (string, error) { return "", errors.New("bad config " + f) }
	code, _, stderr := runMain(t, "sendmail", []string{"-C", "/x.toml", "root"}, "", deps)
	if code != sysexits.Config || !strings.Contains(stderr, "/x.toml") {
		t.Errorf("exit %d stderr %q", code, stderr)
	}
}

func TestMainQueueCallbacks(t *testing.T) {
	deps := testDeps("")
	var listed, flushed int
	deps.ListQueue = func(w io.Writer) int { listed++; io.WriteString(w, "Mail queue is empty\n"); return 0 }
	deps.FlushQueue = func() int { flushed++; return 0 }
	if code, out, _ := runMain(t, "mailq", nil, "", deps); code != 0 || out != "Mail queue is empty\n" {
		t.Errorf("mailq: %d %q", code, out)
	}
	runMain(t, "sendmail", []string{"-bp"}, "", deps)
	runMain(t, "sendmail", []string{"-q"}, "", deps)
	runMain(t, "sendmail", []string{"-q30m"}, "", deps)
	if listed != 2 || flushed != 2 {
		t.Errorf("listed %d flushed %d", listed, flushed)
	}
}

func TestMainLoginFallback(t *testing.T) {
	st := newStateDir(t)
	deps := testDeps(st)
	deps.LookupUser = func(int) (string, error) { return "", errors.New("no passwd entry") }
	if code, _, stderr := runMain(t, "sendmail", []string{"root"}, "S: x\n\nb\n", deps); code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	env, _ := readDropFile(t, filepath.Join(DropDir(st), dropFiles(t, st)[0]))
	if env.From != "uid1234" {
		t.Errorf("sender %q, want uid1234", env.From)
	}
}

const bsDialogue = "EHLO client.example\r\n" +
	"MAIL FROM:<app@example.com> RET=HDRS\r\n" +
	"RCPT TO:<bob@example.com> NOTIFY=FAILURE\r\n" +
	"DATA\r\n" +
	"Subject: bs\r\n\r\nbody\r\n..dot\r\n.\r\n" +
	"QUIT\r\n"

func TestMainStdioSMTP(t *testing.T) {
	t.Run("daemon", func(t *testing.T) {
		st := newStateDir(t)
		d := startDaemon(t, st)
		code, out, stderr := runMain(t, "sendmail", []string{"-bs"}, bsDialogue, testDeps(st))
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkReplies(t, out)
		got := d.messages()
		if len(got) != 1 || got[0].From != "app@example.com" || string(got[0].Data) != "Subject: bs\r\n\r\nbody\r\n.dot\r\n" {
			t.Fatalf("daemon got %+v", got)
		}
	})
	t.Run("maildrop", func(t *testing.T) {
		st := newStateDir(t)
		code, out, stderr := runMain(t, "sendmail", []string{"-bs"}, bsDialogue, testDeps(st))
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkReplies(t, out)
		names := dropFiles(t, st)
		if len(names) != 1 {
			t.Fatalf("maildrop %q", names)
		}
		env, msg := readDropFile(t, filepath.Join(DropDir(st), names[0]))
		if env.From != "app@example.com" || env.Ret != "HDRS" || env.Notify != "FAILURE" || msg != "Subject: bs\r\n\r\nbody\r\n.dot\r\n" {
			t.Errorf("env %+v msg %q", env, msg)
		}
	})
	t.Run("daemon says 4xx", func(t *testing.T) {
		// The daemon's 4xx sends the message to the maildrop: the -bs
		// client gets 250, and the maildrop holds it.
		st := newStateDir(t)
		d := startDaemon(t, st)
		d.failData = smtpTempErr()
		_, out, _ := runMain(t, "sendmail", []string{"-bs"}, bsDialogue, testDeps(st))
		checkReplies(t, out)
		if names := dropFiles(t, st); len(names) != 1 {
			t.Errorf("maildrop %q after the daemon's 4xx, want the message", names)
		}
	})
	t.Run("EOF without QUIT", func(t *testing.T) {
		st := newStateDir(t)
		code, _, _ := runMain(t, "sendmail", []string{"-bs"}, "EHLO x\r\n", testDeps(st))
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	})
}

func checkReplies(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{"220 ", "250 ", "354 ", "250 2.0.0", "221 "} {
		if !strings.Contains(out, want) {
			t.Errorf("reply %q missing in:\n%s", want, out)
		}
	}
}

// TestStdioOverRealPipe runs -bs over an os.Pipe, like a PHP mailer does.
func TestStdioOverRealPipe(t *testing.T) {
	st := newStateDir(t)
	d := startDaemon(t, st)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		done <- Main("sendmail", []string{"-bs"}, inR, outW, io.Discard, testDeps(st))
		outW.Close()
	}()
	go func() {
		inW.WriteString(bsDialogue)
		inW.Close()
	}()
	out, _ := io.ReadAll(outR)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("-bs did not finish")
	}
	checkReplies(t, string(out))
	if len(d.messages()) != 1 {
		t.Errorf("daemon got %d messages", len(d.messages()))
	}
}
