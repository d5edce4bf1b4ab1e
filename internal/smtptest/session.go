package smtptest

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type backend struct{ s *Server }

// NewSession is called for the first EHLO of a connection and again for the
// first EHLO after STARTTLS (go-smtp drops the session on TLS upgrade).
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.addHelo(c.Hostname())
	return &session{s: b.s, c: c, helo: c.Hostname()}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	helo string // last greeting name recorded for this session

	authUser string
	from     string
	mailOpts *smtp.MailOptions
	to       []string
	rcptOpts []*smtp.RcptOptions
}

var (
	errNeedTLS   = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	errNeedAuth  = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errFailFirst = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "smtptest: scripted temporary failure"}
)

func (ss *session) tls() bool {
	_, ok := ss.c.TLSConnectionState()
	return ok
}

// Reset is called on RSET, after DATA and on a repeated EHLO; a changed
// greeting name is recorded here.
func (ss *session) Reset() {
	if h := ss.c.Hostname(); h != ss.helo {
		ss.helo = h
		ss.s.addHelo(h)
	}
	ss.from, ss.mailOpts, ss.to, ss.rcptOpts = "", nil, nil, nil
}

func (ss *session) Logout() error { return nil }

// asErr turns a hook result into an error without the typed-nil trap.
func asErr(e *smtp.SMTPError) error {
	if e == nil {
		return nil
	}
	return e
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.opts.RequireTLS && !ss.tls() {
		return errNeedTLS // RFC 3207 §4
	}
	if (len(ss.s.opts.Users) > 0 || ss.s.opts.OAuth != nil) && ss.authUser == "" {
		return errNeedAuth // RFC 4954 §6
	}
	if f := ss.s.Faults().MailReply; f != nil {
		if err := asErr(f(from)); err != nil {
			return err
		}
	}
	ss.from, ss.mailOpts = from, opts
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if f := ss.s.Faults().RcptReply; f != nil {
		if err := asErr(f(to)); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	ss.rcptOpts = append(ss.rcptOpts, opts)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	s := ss.s
	f := s.Faults()
	if f.DropMidData {
		buf := make([]byte, 16)
		_, _ = io.ReadAtLeast(r, buf, 1)
		for c := ss.c.Conn(); c != nil; {
			if tc, ok := c.(*trackedConn); ok {
				_ = tc.Close()
				break
			}
			next, ok := c.(interface{ NetConn() net.Conn })
			if !ok {
				_ = c.Close()
				break
			}
			c = next.NetConn()
		}
		return errors.New("smtptest: dropped mid-DATA")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if f.Stall > 0 {
		t := time.NewTimer(f.Stall)
		select {
		case <-t.C:
		case <-s.quit:
			t.Stop()
		}
	}

	s.mu.Lock()
	s.datas++
	n := s.datas
	failFirst := s.failed < f.FailFirst
	if failFirst {
		s.failed++
	}
	s.mu.Unlock()
	if failFirst {
		return errFailFirst
	}
	if f.DataReply != nil {
		if e := f.DataReply(n); e != nil {
			return e
		}
	}

	m := Message{
		From:     ss.from,
		To:       append([]string(nil), ss.to...),
		Data:     bytes.Clone(data),
		TLS:      ss.tls(),
		AuthUser: ss.authUser,
		Helo:     ss.c.Hostname(),
		MailOpts: ss.mailOpts,
		RcptOpts: append([]*smtp.RcptOptions(nil), ss.rcptOpts...),
		At:       time.Now(),
		Conn:     connID(ss.c.Conn()),
	}
	if f.MessageReply != nil {
		if e := f.MessageReply(&m); e != nil {
			return e
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// AuthMechanisms advertises PLAIN and LOGIN when accounts exist and, with
// RequireTLS, only once TLS is up.
func (ss *session) AuthMechanisms() []string {
	if (len(ss.s.opts.Users) == 0 && ss.s.opts.OAuth == nil) || (ss.s.opts.RequireTLS && !ss.tls()) {
		return nil
	}
	if m := ss.s.opts.AuthMechs; len(m) > 0 {
		return m
	}
	if ss.s.opts.OAuth != nil {
		return []string{sasl.Plain, sasl.Login, mechXOAuth2, sasl.OAuthBearer}
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	ss.s.mu.Lock()
	ss.s.attempts++
	ss.s.mu.Unlock()
	if ss.s.opts.RequireTLS && !ss.tls() {
		return nil, errNeedTLS
	}
	if !slices.Contains(ss.AuthMechanisms(), mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return ss.check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: ss.check}, nil
	case mechXOAuth2, sasl.OAuthBearer:
		return &oauthServer{mech: mech, ss: ss}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) check(user, pass string) error {
	ss.s.mu.Lock()
	want, ok := ss.s.users[user]
	ss.s.mu.Unlock()
	if !ok || ss.s.Faults().AuthFail || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
		return smtp.ErrAuthFailed // 535 5.7.8, RFC 4954 §6
	}
	ss.authUser = user
	ss.s.mu.Lock()
	ss.s.logins++
	ss.s.mu.Unlock()
	return nil
}

// loginServer is the server side of the (obsolete but widespread) LOGIN
// mechanism, which go-sasl lacks: "Username:" and "Password:" prompts.
type loginServer struct {
	check func(user, pass string) error
	state int
	user  string
}

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case 0:
		l.state = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		l.user = string(resp)
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, errors.New("smtptest: unexpected LOGIN response")
}
