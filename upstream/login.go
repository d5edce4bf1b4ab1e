package upstream

import (
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
)

// loginClient is the client side of the LOGIN mechanism (draft-murchison-
// sasl-login). go-sasl's version only accepts the exact prompt "Password:";
// servers vary ("Username:", "User Name", "Password"), so this one answers by
// prompt text and falls back to order: user name first, then password.
type loginClient struct {
	user, pass string
	step       int
}

var _ sasl.Client = (*loginClient)(nil)

func (l *loginClient) Start() (string, []byte, error) {
	return sasl.Login, nil, nil
}

func (l *loginClient) Next(challenge []byte) ([]byte, error) {
	prompt := strings.ToLower(string(challenge))
	l.step++
	switch {
	case strings.Contains(prompt, "pass"):
		return []byte(l.pass), nil
	case strings.Contains(prompt, "user"):
		return []byte(l.user), nil
	case l.step == 1:
		return []byte(l.user), nil
	case l.step == 2:
		return []byte(l.pass), nil
	}
	return nil, errors.New("upstream: unexpected LOGIN challenge")
}
