package upstream

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"relayd/internal/tlsmode"
)

// fakeMTA is a scripted smarthost on a raw socket, for the protocol-state
// cases go-smtp's server cannot be made to show: a server that keeps the
// envelope after refusing a message at the final dot (Postfix, as seen in
// issue 20), one that refuses a second EHLO on a session (OpenSMTPD), one
// that answers 354 to DATA after refusing MAIL, slow or endless replies.
// It is plain text on loopback (Config.TLS = "none").
type fakeMTA struct {
	t    *testing.T
	l    net.Listener
	opts fakeOpts

	mu     sync.Mutex
	lines  []string // every command line received, all connections
	queued []fakeMsg
	conns  int
	auths  int
	n      map[string]int // commands of each kind over the server's life
	done   chan struct{}
}

type fakeMsg struct {
	From  string
	Rcpts []string
	Data  string
}

type fakeOpts struct {
	pipelining bool
	// keepEnvelope: after a non-2xx reply to the final dot the transaction
	// stays open (MAIL then gets 503 nested MAIL, RCPT adds to it).
	keepEnvelope bool
	// ehloOnce: a second EHLO on a connection gets 503.
	ehloOnce bool
	auth     bool // advertise AUTH PLAIN LOGIN
	// maxRcpts > 0: RCPTs beyond it in one transaction get 452 4.5.3.
	maxRcpts int
	// Replies; "" means the default (250, 354, 235). n counts the
	// server's commands of that kind from 1 over its life.
	mail      func(n int, from string) string
	rcpt      func(n int, to string) string
	data      func(n int, rcpts int) string
	dot       func(n int, m fakeMsg) string
	authReply func(n int) string
	// raw, when set, may answer a command itself (return true): for slow
	// or endless replies.
	raw func(conn net.Conn, line string) bool
}

func newFakeMTA(t *testing.T, o fakeOpts) *fakeMTA {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMTA{t: t, l: l, opts: o, n: map[string]int{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(f.done)
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				go func() { <-f.done; conn.Close() }()
				f.serve(conn)
			}()
		}
	}()
	return f
}

func (f *fakeMTA) Addr() string { return f.l.Addr().String() }

// client returns an upstream Client for f, plain text, one connection.
func (f *fakeMTA) client(t *testing.T, mod func(*Config)) (*Client, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg := Config{Address: f.Addr(), TLS: tlsmode.None, Hostname: testHost, Timeout: 5 * time.Second, MaxConns: 1,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if f.opts.auth {
		cfg.Username, cfg.Password = testUser, testPass
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}

func (f *fakeMTA) Queued() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.queued...)
}

func (f *fakeMTA) Lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// verbs returns the command verbs received, space-separated.
func (f *fakeMTA) verbs() string {
	var v []string
	for _, l := range f.Lines() {
		w, _, _ := strings.Cut(l, " ")
		if w, _, ok := strings.Cut(w, ":"); ok {
			v = append(v, strings.ToUpper(w))
			continue
		}
		v = append(v, strings.ToUpper(w))
	}
	return strings.Join(v, " ")
}

func (f *fakeMTA) Auths() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auths
}

func (f *fakeMTA) Conns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *fakeMTA) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.lines {
		if strings.HasPrefix(strings.ToUpper(l), kind) {
			n++
		}
	}
	return n
}

func (f *fakeMTA) serve(conn net.Conn) {
	r := bufio.NewReader(conn)
	say := func(s string) { io.WriteString(conn, s+"\r\n") }
	say("220 fake.example ESMTP")
	var (
		inTx   bool
		from   string
		rcpts  []string
		helos  int
		record = func(line string) {
			f.mu.Lock()
			f.lines = append(f.lines, line)
			f.mu.Unlock()
		}
	)
	next := func(kind string) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.n[kind]++
		return f.n[kind]
	}
	reset := func() { inTx, from, rcpts = false, "", nil }
	orDefault := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		record(line)
		if f.opts.raw != nil && f.opts.raw(conn, line) {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			helos++
			if f.opts.ehloOnce && helos > 1 {
				say("503 5.5.1 Invalid command: EHLO already sent")
				continue
			}
			ext := []string{"fake.example", "8BITMIME", "SIZE 10240000"}
			if f.opts.pipelining {
				ext = append(ext, "PIPELINING")
			}
			if f.opts.auth {
				ext = append(ext, "AUTH PLAIN LOGIN")
			}
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				say("250" + sep + e)
			}
		case "AUTH":
			nAuth := next("auth")
			f.mu.Lock()
			f.auths++
			f.mu.Unlock()
			if fs := strings.Fields(arg); len(fs) < 2 { // no initial response
				say("334 ")
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
			rep := ""
			if f.opts.authReply != nil {
				rep = f.opts.authReply(nAuth)
			}
			say(orDefault(rep, "235 2.7.0 Authentication successful"))
		case "MAIL":
			nMail := next("mail")
			if inTx {
				say("503 5.5.1 Error: nested MAIL command")
				continue
			}
			rep := ""
			if f.opts.mail != nil {
				rep = f.opts.mail(nMail, addrOf(arg))
			}
			if rep == "" || rep[0] == '2' {
				inTx, from = true, addrOf(arg)
			}
			say(orDefault(rep, "250 2.1.0 Ok"))
		case "RCPT":
			nRcpt := next("rcpt")
			if !inTx {
				say("503 5.5.1 Error: need MAIL command")
				continue
			}
			rep := ""
			if f.opts.rcpt != nil {
				rep = f.opts.rcpt(nRcpt, addrOf(arg))
			}
			if f.opts.maxRcpts > 0 && len(rcpts) >= f.opts.maxRcpts {
				rep = "452 4.5.3 Error: too many recipients"
			}
			if rep == "" || rep[0] == '2' {
				rcpts = append(rcpts, addrOf(arg))
			}
			say(orDefault(rep, "250 2.1.5 Ok"))
		case "DATA":
			nData := next("data")
			rep := ""
			if f.opts.data != nil {
				rep = f.opts.data(nData, len(rcpts))
			}
			if rep == "" {
				switch {
				case !inTx:
					rep = "503 5.5.1 Error: need RCPT command"
				case len(rcpts) == 0:
					rep = "554 5.5.1 Error: no valid recipients"
				default:
					rep = "354 End data with <CR><LF>.<CR><LF>"
				}
			}
			say(rep)
			if !strings.HasPrefix(rep, "354") {
				continue
			}
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			nDot := next("dot")
			m := fakeMsg{From: from, Rcpts: rcpts, Data: b.String()}
			rep = ""
			if f.opts.dot != nil {
				rep = f.opts.dot(nDot, m)
			}
			if rep == "" || rep[0] == '2' {
				if len(rcpts) > 0 {
					f.mu.Lock()
					f.queued = append(f.queued, m)
					f.mu.Unlock()
				}
				reset()
			} else if !f.opts.keepEnvelope {
				reset()
			}
			say(orDefault(rep, "250 2.0.0 Ok: queued"))
		case "RSET":
			reset()
			say("250 2.0.0 Ok")
		case "NOOP":
			say("250 2.0.0 Ok")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say(fmt.Sprintf("502 5.5.2 Error: command %q not recognized", verb))
		}
	}
}

// addrOf returns the address in "FROM:<a> PARAMS" or "TO:<a>".
func addrOf(arg string) string {
	_, rest, _ := strings.Cut(arg, "<")
	a, _, _ := strings.Cut(rest, ">")
	return a
}
