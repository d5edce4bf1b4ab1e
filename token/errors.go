package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/oauth2"
)

// Kind sorts token endpoint failures by what fixes them.
type Kind string

// Kinds of Error; they are also the result label of the refresh metric.
const (
	KindUnreachable     Kind = "unreachable"      // network, DNS, TLS, timeout
	KindServerError     Kind = "server_error"     // 5xx or 429 from the endpoint
	KindInvalidClient   Kind = "invalid_client"   // client_id / secret / key refused
	KindConsentRequired Kind = "consent_required" // admin consent or delegation missing
	KindInvalidGrant    Kind = "invalid_grant"    // refresh token expired or revoked
	KindNoRefreshToken  Kind = "no_refresh_token" // relayd oauth2 login never ran
	KindRejected        Kind = "rejected"         // any other refusal (invalid_scope, ...)
	KindLocal           Kind = "local"            // a local file could not be read or written
)

// Error is a failure to get a token. Its text has the provider's error code
// and description but never a token, a secret or a response body.
type Error struct {
	Kind        Kind
	Status      int    // HTTP status, 0 without a response
	Code        string // RFC 6749 §5.2 "error"
	Description string // "error_description", cleaned and shortened
	Err         error
	hint        string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("oauth2 token endpoint: ")
	switch {
	case e.Code != "":
		fmt.Fprintf(&b, "%s", e.Code)
		if e.Description != "" {
			fmt.Fprintf(&b, ": %s", e.Description)
		}
	case e.Status != 0:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(string(e.Kind))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports a failure that may clear by itself (the endpoint is
// down or overloaded); the others need the admin.
func (e *Error) Temporary() bool {
	return e.Kind == KindUnreachable || e.Kind == KindServerError || e.Kind == KindLocal
}

// Hint is the fix, one line.
func (e *Error) Hint() string { return e.hint }

// classify turns an x/oauth2 error into an *Error for grant.
func classify(grant string, err error) *Error {
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// x/oauth2 wraps transport errors; keep them (they name the
		// host and the cause, never the request body).
		return &Error{Kind: KindUnreachable, Err: err,
			hint: "the token endpoint cannot be reached: check oauth2.token_url, DNS, the firewall (outbound HTTPS) and oauth2.ca_file; mail is deferred until it answers"}
	}
	code, desc := re.ErrorCode, re.ErrorDescription
	if code == "" {
		// x/oauth2/jwt leaves the RFC 6749 §5.2 body unparsed.
		var j struct {
			Code string `json:"error"`
			Desc string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &j) == nil {
			code, desc = j.Code, j.Desc
		}
	}
	e := &Error{Kind: KindRejected, Code: clean(code, 64), Description: clean(desc, 300)}
	if re.Response != nil {
		e.Status = re.Response.StatusCode
	}
	desc = strings.ToUpper(desc)
	switch {
	case e.Status >= 500 || e.Status == 429:
		e.Kind = KindServerError
		e.hint = "the token endpoint has a problem of its own; mail is deferred and retried"
	case strings.Contains(desc, "AADSTS65001") || e.Code == "consent_required" || e.Code == "interaction_required" ||
		(grant == GrantJWT && e.Code == "unauthorized_client"):
		e.Kind = KindConsentRequired
		if grant == GrantJWT {
			e.hint = "the service account may not act for oauth2.subject: in the Google Admin console (Security > API controls > Domain-wide delegation) add its client ID with the scope https://mail.google.com/"
		} else {
			e.hint = "the app lacks consent for the requested scopes: an administrator must grant consent (Entra admin center > App registrations > API permissions > Grant admin consent), then retry"
		}
	case e.Code == "invalid_client" || e.Code == "unauthorized_client" || strings.Contains(desc, "AADSTS7000215") || strings.Contains(desc, "AADSTS700016"):
		e.Kind = KindInvalidClient
		e.hint = "the token endpoint rejects the client: check oauth2.client_id and the secret in oauth2.client_secret_file (or the key_file); secrets expire, make a new one if needed"
	case e.Code == "invalid_grant":
		if grant == GrantRefreshToken {
			e.Kind = KindInvalidGrant
			e.hint = "the refresh token has expired or was revoked: run  relayd oauth2 login  again"
		} else {
			e.hint = "the token endpoint refused the grant: check oauth2.subject, the key and the scopes"
		}
	case e.Code == "access_denied":
		e.hint = "the sign-in was declined: run relayd oauth2 login again and approve the request"
	case e.Code == "expired_token":
		e.hint = "the code expired before the sign-in was completed: run relayd oauth2 login again"
	default:
		e.hint = "the token endpoint refused the request: check oauth2.scopes and the app registration"
	}
	return e
}

// clean keeps s printable and at most n bytes: provider text goes to logs.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
