package smtptest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/emersion/go-smtp"
)

// mechXOAuth2 is Google's and Microsoft's XOAUTH2 (not in go-sasl).
const mechXOAuth2 = "XOAUTH2"

// oauthMaxLine is the command-line limit with Options.OAuth: real
// smarthosts take AUTH lines of several KB.
const oauthMaxLine = 16 << 10

// oauthServer is the server side of XOAUTH2 and OAUTHBEARER (RFC 7628):
// an initial response carrying user and bearer token; a token that
// Options.OAuth refuses gets the error challenge (a 334 with base64 JSON,
// RFC 7628 §3.2.2), and after the client's dummy response (empty for
// XOAUTH2, %x01 for OAUTHBEARER, §3.2.3; either is accepted) 535 5.7.8.
//
// Like a real server, it refuses an AUTH command line longer than 512
// octets (RFC 5321 §4.5.3.1.4): a long initial response must be sent as
// the answer to an empty 334 instead (RFC 4954 §4).
type oauthServer struct {
	mech  string
	ss    *session
	state int
	asked bool // the empty 334 was sent: the response is not on the AUTH line
}

// errLineTooLong is go-smtp's answer to an overlong command line.
var errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Line too long"}

// ErrorStatus is the "status" of the JSON error challenge.
const ErrorStatus = "invalid_token"

func (o *oauthServer) Next(resp []byte) ([]byte, bool, error) {
	switch o.state {
	case 0:
		if resp == nil {
			o.asked = true
			return []byte{}, false, nil // "334 " asking for the response
		}
		if !o.asked && len("AUTH ")+len(o.mech)+1+base64.StdEncoding.EncodedLen(len(resp))+len("\r\n") > 512 {
			return nil, true, errLineTooLong
		}
		o.state = 1
		user, token, err := o.parse(resp)
		if err == nil {
			s := o.ss.s
			if !s.Faults().AuthFail && s.opts.OAuth(user, token) {
				o.ss.authUser = user
				s.mu.Lock()
				s.logins++
				s.mu.Unlock()
				return nil, true, nil
			}
		}
		blob, _ := json.Marshal(map[string]string{"status": ErrorStatus, "schemes": "bearer", "scope": "https://mail.example/"})
		return blob, false, nil
	case 1:
		o.state = 2
		if len(resp) > 1 || (len(resp) == 1 && resp[0] != 0x01) {
			return nil, true, errors.New("smtptest: expected the dummy response to the error challenge")
		}
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, true, errors.New("smtptest: unexpected OAuth response")
}

// parse splits "user=U^Aauth=Bearer T^A^A" (XOAUTH2) or
// "n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A" (OAUTHBEARER).
func (o *oauthServer) parse(resp []byte) (user, token string, err error) {
	kvs := resp
	if o.mech != mechXOAuth2 {
		parts := bytes.SplitN(resp, []byte{','}, 3)
		if len(parts) != 3 || string(parts[0]) != "n" {
			return "", "", errors.New("bad gs2 header")
		}
		user = strings.TrimPrefix(string(parts[1]), "a=")
		kvs = parts[2]
	}
	if !bytes.HasSuffix(kvs, []byte{1, 1}) {
		return "", "", errors.New("not terminated by ^A^A")
	}
	for _, kv := range strings.Split(string(kvs), "\x01") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "user":
			user = v
		case "auth":
			scheme, t, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") {
				return "", "", errors.New("not a bearer token")
			}
			token = t
		}
	}
	if user == "" || token == "" {
		return "", "", errors.New("user or token missing")
	}
	return user, token, nil
}
