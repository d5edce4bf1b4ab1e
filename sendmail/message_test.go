package sendmail

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"relayd/internal/sysexits"
)

func readAll(t *testing.T, in string, opts Options, from string) (*Message, string) {
	t.Helper()
	m, err := ReadMessage(strings.NewReader(in), opts, from)
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	b, err := io.ReadAll(m.Reader())
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return m, string(b)
}

func TestDotHandling(t *testing.T) {
	in := "Subject: x\n\nline 1\n.\nafter dot\n"
	_, got := readAll(t, in, Options{}, "me")
	if want := "Subject: x\r\n\r\nline 1\r\n"; got != want {
		t.Errorf("without -i: got %q want %q", got, want)
	}
	_, got = readAll(t, in, Options{IgnoreDots: true}, "me")
	if want := "Subject: x\r\n\r\nline 1\r\n.\r\nafter dot\r\n"; got != want {
		t.Errorf("with -i: got %q want %q", got, want)
	}
	// ".." and ". " are content, CRLF "." ends, "." at EOF without newline ends.
	_, got = readAll(t, "S: y\r\n\r\n..\r\n. \r\n.\r\nlost\r\n", Options{}, "me")
	if want := "S: y\r\n\r\n..\r\n. \r\n"; got != want {
		t.Errorf("CRLF dot: got %q want %q", got, want)
	}
	_, got = readAll(t, "S: y\n\nbody\n.", Options{}, "me")
	if want := "S: y\r\n\r\nbody\r\n"; got != want {
		t.Errorf("dot at EOF: got %q want %q", got, want)
	}
	// A dot line inside the header block also ends the input.
	_, got = readAll(t, "S: y\n.\nBody: no\n", Options{}, "me")
	if want := "S: y\r\n\r\n"; got != want {
		t.Errorf("dot in header: got %q want %q", got, want)
	}
}

func TestLineEndings(t *testing.T) {
	_, got := readAll(t, "A: 1\nB: 2\r\n\nmixed\r\nlf\nlast", Options{IgnoreDots: true}, "me")
	if want := "A: 1\r\nB: 2\r\n\r\nmixed\r\nlf\r\nlast\r\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("x", 200000)
	in := "Subject: " + long + "\r\n\r\n" + long + "\r\n" + strings.Repeat("y", 65535) + "\r\n.\r\n"
	_, got := readAll(t, in, Options{}, "me")
	want := "Subject: " + long + "\r\n\r\n" + long + "\r\n" + strings.Repeat("y", 65535) + "\r\n"
	if got != want {
		t.Errorf("long lines mangled: len got %d want %d", len(got), len(want))
	}
	if strings.Contains(got, "\r\r") {
		t.Error("a CRLF split across buffer pieces became CR CR LF")
	}
}

func TestNoHeaders(t *testing.T) {
	_, got := readAll(t, "just text\nmore\n", Options{}, "me")
	if want := "\r\njust text\r\nmore\r\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	_, got = readAll(t, "From someone Mon Jan  1 00:00:00 2026\nSubject: s\n\nb\n", Options{}, "me")
	if want := "Subject: s\r\n\r\nb\r\n"; got != want {
		t.Errorf("mbox From_ line: got %q want %q", got, want)
	}
}

func TestExtractRecipients(t *testing.T) {
	in := "From: me@example.com\n" +
		"To: Alice <alice@example.com>, root\n" +
		"Cc: undisclosed-recipients:;\n" +
		"cc: team: bob@example.com, \"Carol, C\" <carol@example.com>;\n" +
		"Bcc: secret@example.com,\n\thidden@example.org\n" +
		"Subject: hi\n\nbody\nBcc: not-a-header@example.com\n"
	m, got := readAll(t, in, Options{ExtractRecipients: true}, "me")
	want := []string{"alice@example.com", "root", "bob@example.com", "carol@example.com", "secret@example.com", "hidden@example.org"}
	if !reflect.DeepEqual(m.Rcpts, want) {
		t.Errorf("rcpts %q, want %q", m.Rcpts, want)
	}
	if strings.Contains(got, "secret@") || strings.Contains(got, "hidden@") {
		t.Errorf("Bcc leaked into the message:\n%s", got)
	}
	if !strings.Contains(got, "Subject: hi\r\n\r\nbody\r\nBcc: not-a-header@example.com\r\n") {
		t.Errorf("body changed:\n%q", got)
	}
	// Without -t nothing is collected, but Bcc is still removed.
	m, got = readAll(t, in, Options{}, "me")
	if len(m.Rcpts) != 0 || strings.Contains(got, "secret@") {
		t.Errorf("without -t: rcpts %q, message %q", m.Rcpts, got)
	}
}

func TestFullNameAddsFrom(t *testing.T) {
	_, got := readAll(t, "Subject: s\n\nb\n", Options{FullName: "CronDaemon"}, "root")
	if !strings.HasPrefix(got, "Subject: s\r\nFrom: CronDaemon <root>\r\n\r\n") {
		t.Errorf("got %q", got)
	}
	_, got = readAll(t, "Subject: s\n\nb\n", Options{FullName: "Dr. Who"}, "who@example.com")
	if !strings.Contains(got, "From: \"Dr. Who\" <who@example.com>\r\n") {
		t.Errorf("got %q", got)
	}
	_, got = readAll(t, "from: x@example.com\n\nb\n", Options{FullName: "N"}, "root")
	if strings.Count(strings.ToLower(got), "from:") != 1 {
		t.Errorf("From added although present: %q", got)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	in := strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\n", 1100) + "\nbody\n"
	_, err := ReadMessage(strings.NewReader(in), Options{}, "me")
	if ExitCode(err) != sysexits.DataErr || !strings.Contains(err.Error(), "header too large") {
		t.Fatalf("err = %v (code %d), want 65 header too large", err, ExitCode(err))
	}
}
