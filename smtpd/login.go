package smtpd

import (
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// loginServer is the server side of the obsolete but widespread LOGIN SASL
// mechanism (draft-murchison-sasl-login), which go-sasl lacks: two
// challenges, "Username:" and "Password:".
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func newLoginServer(check func(user, pass string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 { // no initial response
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, smtp.ErrAuthFailed
}
