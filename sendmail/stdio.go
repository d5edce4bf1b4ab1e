package sendmail

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/sysexits"
)

// ServeStdio runs one SMTP session (sendmail -bs) on in/out: a go-smtp
// server whose backend forwards each accepted message through sub (daemon
// socket or maildrop). It returns when the client QUITs or in reaches EOF.
func ServeStdio(ctx context.Context, in io.Reader, out io.Writer, sub *Submitter, errLog io.Writer) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &stdioSession{ctx: ctx, sub: sub}, nil
	}))
	srv.Domain = "localhost"
	srv.EnableDSN = true
	srv.MaxMessageBytes = sub.MaxBytes
	srv.ErrorLog = log.New(errLog, "sendmail -bs: ", 0)
	conn := &stdioConn{r: in, w: out, closed: make(chan struct{})}
	l := &oneConnListener{conn: conn}
	err := srv.Serve(l)
	<-conn.closed
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// stdioSession collects one transaction and submits it at DATA.
type stdioSession struct {
	ctx context.Context
	sub *Submitter
	env Envelope
}

func (s *stdioSession) Reset()        { s.env = Envelope{} }
func (s *stdioSession) Logout() error { return nil }

func (s *stdioSession) Mail(from string, opts *smtp.MailOptions) error {
	if err := checkAddr("sender", from); err != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	}
	s.env = Envelope{From: from}
	if opts != nil {
		s.env.Ret = string(opts.Return)
		s.env.EnvID = opts.EnvelopeID
	}
	return nil
}

func (s *stdioSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if to == "" || checkAddr("recipient", to) != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	}
	if opts != nil && len(opts.Notify) > 0 {
		var ns []string
		for _, n := range opts.Notify {
			ns = append(ns, string(n))
		}
		// One NOTIFY for the whole envelope: the first recipient's wins
		// (the maildrop format carries a single value).
		if s.env.Notify == "" {
			s.env.Notify = strings.Join(ns, ",")
		}
	}
	s.env.Rcpts = append(s.env.Rcpts, to)
	return nil
}

// Data returns *smtp.SMTPError values directly: go-smtp turns anything
// else into a permanent 554.
func (s *stdioSession) Data(r io.Reader) error {
	err := s.sub.Submit(s.ctx, s.env, r)
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch ExitCode(err) {
	case sysexits.TempFail:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: msg}
	case sysexits.NoUser:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: msg}
	case sysexits.Unavailable:
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: msg}
	default:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: msg}
	}
}

// stdioConn is a net.Conn over stdin/stdout. Deadlines are not supported
// (pipes have none); Close unblocks the listener.
type stdioConn struct {
	r      io.Reader
	w      io.Writer
	once   sync.Once
	closed chan struct{}
}

func (c *stdioConn) Read(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.r.Read(p)
}

func (c *stdioConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.w.Write(p)
}

func (c *stdioConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *stdioConn) LocalAddr() net.Addr                { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr               { return stdioAddr{} }
func (c *stdioConn) SetDeadline(t time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(t time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }

// oneConnListener hands out its connection once; the next Accept waits for
// that connection to close and then reports net.ErrClosed, ending Serve.
type oneConnListener struct {
	conn  *stdioConn
	taken bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.conn, nil
	}
	<-l.conn.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return stdioAddr{} }
