package upstream

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"relayd/envelope"
	"relayd/internal/smtptest"
)

const (
	testHost = "relay.example.com"
	testUser = "relayuser"
	testPass = "s3cret-Pa55word"
)

// testBody has a dot-leading line and 8-bit bytes to prove byte identity.
var testBody = "From: a@example.com\r\nTo: b@example.net\r\nSubject: t\r\n\r\n.leading dot\r\n\xc3\xa9t\xc3\xa9\r\n" +
	strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 2048)

// logBuf collects log output to prove secrets never reach it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// strictServer requires STARTTLS and AUTH.
func strictServer(t *testing.T, f smtptest.Faults) *smtptest.Server {
	return smtptest.New(t, smtptest.Options{RequireTLS: true, Users: map[string]string{testUser: testPass}, Faults: f})
}

func newClient(t *testing.T, s *smtptest.Server, mod func(*Config)) (*Client, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg := Config{
		Address:  s.Addr(),
		Hostname: testHost,
		Username: testUser,
		Password: testPass,
		Timeout:  5 * time.Second,
		MaxConns: 2,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if ca := s.CA(); ca != nil {
		cfg.RootCAs = ca.Pool()
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if strings.Contains(logs.String(), testPass) {
			t.Errorf("password in logs:\n%s", logs)
		}
	})
	return c, logs
}

func delivery(id string, rcpts ...string) *envelope.Delivery {
	d := &envelope.Delivery{ID: id, From: "a@example.com", Size: int64(len(testBody))}
	for _, r := range rcpts {
		d.Rcpts = append(d.Rcpts, envelope.Recipient{Addr: r, State: envelope.Pending})
	}
	d.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(testBody)), nil }
	return d
}

// wantErr asserts err is an *Error at stage.
func wantErr(t *testing.T, err error, stage Stage) *Error {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("err = %T %v, want *Error at %s", err, err, stage)
	}
	if e.Stage != stage {
		t.Fatalf("stage = %s, want %s (%v)", e.Stage, stage, e)
	}
	return e
}
