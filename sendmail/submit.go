package sendmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/reply"
	"relayd/internal/sysexits"
)

// DefaultTimeout bounds each read and write on the daemon's socket.
const DefaultTimeout = 2 * time.Minute

// Submitter hands messages to the daemon, or to the maildrop when the
// daemon is not running.
type Submitter struct {
	StateDir string // the daemon's state_dir
	// Dial connects to the daemon's Unix socket; nil means net.Dialer.
	Dial func(ctx context.Context, path string) (net.Conn, error)
	// Timeout bounds every read and write on the socket (idle deadline);
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxBytes, when > 0, is the largest message accepted; a bigger one is
	// refused with exit 69 and nothing is queued.
	MaxBytes int64
	// Stderr, when set (sendmail -v), receives the SMTP dialogue and the outcome.
	Stderr io.Writer
	// Logf, when set, receives debug lines.
	Logf func(format string, args ...any)
}

// LocalDomain qualifies bare local names ("root", the login name) on the
// daemon socket: go-smtp's server parser (like RFC 5321 section 4.1.2)
// refuses a path without "@domain". The daemon must treat "@localhost" as
// local and rewrite it (rewrite.sender / rewrite.admin) exactly as a bare
// name. The maildrop keeps bare names as they are.
const LocalDomain = "localhost"

// QualifyLocal appends "@"+LocalDomain to an address without "@"; the null
// sender "" stays "".
func QualifyLocal(addr string) string {
	if addr == "" || strings.Contains(addr, "@") {
		return addr
	}
	return addr + "@" + LocalDomain
}

// SocketPath is where the daemon listens for local submissions.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, "public", "submit.sock") }

// DropDir is the maildrop directory.
func DropDir(stateDir string) string { return filepath.Join(stateDir, "maildrop") }

// Submit delivers one message. It first stages the message in the
// maildrop (an uncommitted dot file), then tries the daemon's socket. When
// the daemon cannot take it — the socket is absent or refuses connections
// (daemon down), the connection fails or times out, or the daemon answers
// 4xx (421 "too many connections" included) — the staged file is committed
// to the maildrop instead, so a local submission is never lost to a busy
// or flooded daemon. A 5xx is final (no fallback: the pickup would refuse
// it the same way); after 250 the staged copy is discarded. A timeout or a
// broken connection after the final dot is ambiguous (the daemon may have
// queued it): the message then goes to the maildrop too, a possible
// duplicate rather than a possible loss. The returned error is an
// *ExitError.
func (s *Submitter) Submit(ctx context.Context, env Envelope, msg io.Reader) error {
	if err := env.validate(); err != nil {
		return exitf(sysexits.Usage, err, "invalid envelope")
	}
	if s.MaxBytes > 0 {
		msg = &limitReader{r: msg, left: s.MaxBytes}
	}
	sd, created, err := stageDrop(DropDir(s.StateDir), env, msg)
	if err != nil && created {
		return err // bad input, too big, or the disk failed while writing
	}
	if err != nil {
		// No maildrop to stage in (not created yet, not writable): the
		// socket only, as without a fallback.
		s.logf("cannot stage in the maildrop (%v); socket only", err)
		conn, derr := s.dial(ctx)
		if derr != nil {
			return exitf(sysexits.TempFail, derr, "cannot connect to relayd at %s, and %v", SocketPath(s.StateDir), err)
		}
		ee, _ := s.sendSMTP(ctx, conn, env, msg)
		if ee != nil {
			return ee
		}
		return nil
	}
	defer sd.discard()
	conn, err := s.dial(ctx)
	if err != nil {
		return s.fallback(sd, fmt.Sprintf("daemon not reachable (%v)", err))
	}
	ee, retry := s.sendSMTP(ctx, conn, env, sd.message())
	switch {
	case ee == nil:
		return nil
	case retry && ctx.Err() == nil:
		return s.fallback(sd, ee.Error())
	}
	return ee
}

// fallback commits the staged message to the maildrop.
func (s *Submitter) fallback(sd *stagedDrop, why string) error {
	s.logf("%s, using maildrop", why)
	name, err := sd.commit()
	if err != nil {
		return err
	}
	s.say("relayd did not take the message (%s); stored in maildrop as %s, it will be sent when the daemon picks it up", why, name)
	return nil
}

func (s *Submitter) dial(ctx context.Context) (net.Conn, error) {
	path := SocketPath(s.StateDir)
	if s.Dial != nil {
		return s.Dial(ctx, path)
	}
	var d net.Dialer
	d.Timeout = s.timeout()
	return d.DialContext(ctx, "unix", path)
}

func (s *Submitter) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

// sendSMTP runs one SMTP transaction on conn. Any RCPT refusal aborts the
// whole transaction (nothing queued), so the caller's exit status speaks for
// the entire message. retry reports that the daemon did not take the
// message and the maildrop may: a transport failure or a 4xx, never a 5xx,
// never a failure to read msg.
func (s *Submitter) sendSMTP(ctx context.Context, conn net.Conn, env Envelope, msg io.Reader) (ee *ExitError, retry bool) {
	dc := &deadlineConn{Conn: conn, d: s.timeout()}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	c := smtp.NewClient(dc)
	c.CommandTimeout = s.timeout()
	c.SubmissionTimeout = s.timeout()
	if s.Stderr != nil {
		c.DebugWriter = s.Stderr
	}
	if err := c.Hello("localhost"); err != nil {
		return smtpExit(err, "EHLO"), temporary(err)
	}
	mo := &smtp.MailOptions{Return: smtp.DSNReturn(env.Ret), EnvelopeID: env.EnvID}
	if err := c.Mail(QualifyLocal(env.From), mo); err != nil {
		return smtpExit(err, fmt.Sprintf("MAIL FROM:<%s>", env.From)), temporary(err)
	}
	var ro *smtp.RcptOptions
	if env.Notify != "" {
		ro = &smtp.RcptOptions{}
		for _, n := range strings.Split(env.Notify, ",") {
			ro.Notify = append(ro.Notify, smtp.DSNNotify(n))
		}
	}
	for _, r := range env.Rcpts {
		if err := c.Rcpt(QualifyLocal(r), ro); err != nil {
			return smtpExit(err, fmt.Sprintf("RCPT TO:<%s>", r)), temporary(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpExit(err, "DATA"), temporary(err)
	}
	if _, err := io.Copy(w, &sourceReader{msg}); err != nil {
		// Abort without the final dot: closing the connection mid-DATA
		// makes the daemon discard the message.
		conn.Close()
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee, false
		}
		var se *sourceErr
		if errors.As(err, &se) {
			return exitf(sysexits.TempFail, se.err, "reading the message"), false
		}
		return exitf(sysexits.TempFail, err, "sending message to relayd"), true
	}
	if err := w.Close(); err != nil {
		return smtpExit(err, "end of DATA"), temporary(err)
	}
	s.say("message accepted by relayd")
	c.Quit() // the message is queued; a failing QUIT changes nothing
	return nil, false
}

// temporary reports a failure that the maildrop may still get past: a
// 4xx reply, or anything that is not a reply (network, timeout).
func temporary(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 400 && se.Code < 500
	}
	return true
}

// sourceReader marks errors of the message source, to tell them from
// errors writing to the socket.
type sourceReader struct{ r io.Reader }

type sourceErr struct{ err error }

func (e *sourceErr) Error() string { return e.err.Error() }
func (e *sourceErr) Unwrap() error { return e.err }

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		var ee *ExitError
		if errors.As(err, &ee) {
			return n, err
		}
		return n, &sourceErr{err}
	}
	return n, err
}

// smtpExit maps a daemon reply or a transport error to an exit code:
// 4xx and network trouble are temporary (75); 5.6.x (bad content) is bad
// message data (65); 5xx to RCPT is an unknown addressee (67); other 5xx
// are permanent refusals (69).
func smtpExit(err error, cmd string) *ExitError {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return exitf(sysexits.TempFail, err, "relayd connection failed at %s", cmd)
	}
	code := sysexits.Unavailable
	switch {
	case se.Code >= 400 && se.Code < 500:
		code = sysexits.TempFail
	case se.Code == 552 || se.EnhancedCode == smtp.EnhancedCode{5, 3, 4}:
		code = sysexits.Unavailable
	case se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 6:
		// RFC 3463 5.6.x: the content itself (bare CR, NUL, a line too
		// long): bad message data, and the text says which.
		code = sysexits.DataErr
	case strings.HasPrefix(cmd, "RCPT"):
		code = sysexits.NoUser
	}
	return &ExitError{Code: code, Msg: fmt.Sprintf("relayd refused %s: %s", cmd, reply.Format(se))}
}

func (s *Submitter) say(format string, args ...any) {
	if s.Stderr != nil {
		fmt.Fprintf(s.Stderr, "sendmail: "+format+"\n", args...)
	}
}

func (s *Submitter) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// deadlineConn refreshes an idle deadline before every read and write, so
// a stuck daemon cannot hang the caller (go-smtp sets no deadline on the
// DATA body writes).
type deadlineConn struct {
	net.Conn
	d time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.d))
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.d))
	return c.Conn.Write(p)
}

// SetDeadline etc. are ignored: go-smtp's own deadlines (and its reset to
// "no deadline" after DATA) would otherwise override the idle deadline.
func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// limitReader fails with exit 69 once more than left bytes were read.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		// Postfix's sendmail exits 69 (EX_UNAVAILABLE) with "message file
		// too big"; callers such as PHP and cron already know that status.
		return 0, exitf(sysexits.Unavailable, nil, "message file too big")
	}
	return n, err
}
