package sendmail

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"relayd/internal/sysexits"
)

// Deps is what Main needs from its caller (cmd/relayd wiring); everything
// the environment provides is injectable for tests.
type Deps struct {
	// StateDir loads the configuration (-C FILE, or the default when "")
	// and returns state_dir.
	StateDir func(configFile string) (string, error)
	// ListQueue prints the queue (mailq, -bp) and returns an exit code.
	ListQueue func(w io.Writer) int
	// FlushQueue asks the daemon to retry deferred mail now (-q).
	FlushQueue func() int
	// MaxMessageBytes, when > 0, is the largest message accepted.
	MaxMessageBytes int64
	// Getuid returns the invoking uid; nil means os.Getuid.
	Getuid func() int
	// LookupUser returns the login name of uid; nil means os/user.
	LookupUser func(uid int) (string, error)
	// Dial overrides the daemon socket dialer (tests); nil is the default.
	Dial func(ctx context.Context, path string) (net.Conn, error)
	// Timeout bounds each socket read/write; 0 is DefaultTimeout.
	Timeout time.Duration
}

// Main runs the sendmail-compatible command and returns its exit status
// (sysexits.h). argv0 selects the personality: "mailq" lists the queue,
// "newaliases" does nothing, anything else is sendmail.
func Main(argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer, deps Deps) int {
	prog := filepath.Base(argv0)
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return ExitCode(err)
	}
	switch prog {
	case "mailq":
		return listQueue(deps, stdout, stderr)
	case "newaliases":
		return sysexits.OK // relayd has no alias database
	}
	opts, err := ParseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\nusage: %s [-t] [-i] [-f sender] [-F name] [-N dsn] [-bm|-bs|-bp|-q] [--] [recipient ...]\n", prog, err, prog)
		return sysexits.Usage
	}
	switch opts.Mode {
	case NoOp:
		return sysexits.OK
	case ListQueue:
		return listQueue(deps, stdout, stderr)
	case FlushQueue:
		if deps.FlushQueue == nil {
			return fail(exitf(sysexits.Unavailable, nil, "queue flush is not available"))
		}
		return deps.FlushQueue()
	}

	if deps.StateDir == nil {
		return fail(exitf(sysexits.Config, nil, "no configuration loader"))
	}
	stateDir, err := deps.StateDir(opts.ConfigFile)
	if err != nil {
		return fail(exitf(sysexits.Config, err, "configuration"))
	}
	sub := &Submitter{StateDir: stateDir, Dial: deps.Dial, Timeout: deps.Timeout, MaxBytes: deps.MaxMessageBytes}
	if opts.Verbose {
		sub.Stderr = stderr
	}
	ctx := context.Background()
	if opts.Mode == SMTPStdio {
		if err := ServeStdio(ctx, stdin, stdout, sub, stderr); err != nil {
			return fail(exitf(sysexits.TempFail, err, "SMTP session"))
		}
		return sysexits.OK
	}

	login := loginName(deps)
	if err := deliver(ctx, opts, login, stdin, sub); err != nil {
		return fail(err)
	}
	return sysexits.OK
}

// deliver is sendmail -bm: read, collect recipients, submit.
func deliver(ctx context.Context, opts Options, login string, stdin io.Reader, sub *Submitter) error {
	var rcpts []string
	for _, r := range opts.Recipients {
		rcpts = append(rcpts, parseAddrList(r)...)
	}
	if len(rcpts) == 0 && !opts.ExtractRecipients {
		return usagef("no recipients (give them as arguments, or use -t)")
	}
	sender := login
	if opts.FromSet {
		sender = opts.From
	}
	fromAddr := sender
	if fromAddr == "" {
		fromAddr = login
	}
	m, err := ReadMessage(stdin, opts, fromAddr)
	if err != nil {
		return err
	}
	rcpts = dedupe(append(rcpts, m.Rcpts...))
	if len(rcpts) == 0 {
		return usagef("no recipients (none on the command line, none in To, Cc or Bcc)")
	}
	env := Envelope{From: sender, Rcpts: rcpts, Notify: opts.Notify}
	return sub.Submit(ctx, env, m.Reader())
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// loginName is the invoking user's login name, the default envelope sender
// (the daemon qualifies it with rewrite.sender), or "uid<N>" if unknown.
func loginName(deps Deps) string {
	uid := os.Getuid()
	if deps.Getuid != nil {
		uid = deps.Getuid()
	}
	lookup := deps.LookupUser
	if lookup == nil {
		lookup = func(uid int) (string, error) {
			u, err := user.LookupId(strconv.Itoa(uid))
			if err != nil {
				return "", err
			}
			return u.Username, nil
		}
	}
	if name, err := lookup(uid); err == nil && name != "" && checkAddr("login", name) == nil {
		return name
	}
	return "uid" + strconv.Itoa(uid)
}

func listQueue(deps Deps, stdout, stderr io.Writer) int {
	if deps.ListQueue == nil {
		fmt.Fprintln(stderr, "mailq: queue listing is not available")
		return sysexits.Unavailable
	}
	return deps.ListQueue(stdout)
}
