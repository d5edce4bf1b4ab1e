package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"
)

// OAuth2 is [upstream.oauth2]: where the access tokens of auth = "xoauth2"
// or "oauthbearer" come from.
type OAuth2 struct {
	// Grant: "client_credentials", "refresh_token" (the refresh token is
	// kept in state_dir/oauth2/USERNAME.json, first stored by
	// `relayd oauth2 login`) or "jwt" (Google service account).
	Grant         string   `toml:"grant"`
	TokenURL      string   `toml:"token_url"`       // jwt: default the key file's token_uri
	DeviceAuthURL string   `toml:"device_auth_url"` // for relayd oauth2 login
	ClientID      string   `toml:"client_id"`
	SecretFile    string   `toml:"client_secret_file"` // or the systemd credential "oauth2"
	Scopes        []string `toml:"scopes"`
	KeyFile       string   `toml:"key_file"` // jwt: the service account key (JSON)
	Subject       string   `toml:"subject"`  // jwt: the mailbox; default upstream.username
	CAFile        string   `toml:"ca_file"`  // extra roots for the token endpoint
	Timeout       Duration `toml:"timeout"`  // per HTTP request; 0 = 30s
	// ClientSecret is resolved at load time from SecretFile or the
	// systemd credential "oauth2"; never logged, never in TOML.
	ClientSecret string `toml:"-" json:"-"`
}

// Values of Upstream.Auth.
const (
	AuthXOAuth2     = "xoauth2"
	AuthOAuthBearer = "oauthbearer"
)

// Values of OAuth2.Grant.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
	GrantJWT               = "jwt"
)

// OAuth reports whether the smarthost login uses an OAuth2 token.
func (u Upstream) OAuth() bool { return u.Auth == AuthXOAuth2 || u.Auth == AuthOAuthBearer }

// checkAuth validates upstream.auth and, for the OAuth2 mechanisms,
// [upstream.oauth2] (resolving the client secret); otherwise the password.
func (u *Upstream) checkAuth(errs *Errors, e env, sc scope) {
	switch u.Auth {
	case "", "plain", "login", AuthXOAuth2, AuthOAuthBearer:
	default:
		errs.add(sc.key+"auth", `%q is not one of "" (PLAIN or LOGIN, whichever is offered), plain, login, xoauth2, oauthbearer`, u.Auth)
	}
	if !u.OAuth() {
		if u.OAuth2.Grant != "" {
			errs.add(sc.key+"oauth2.grant", `is set but %sauth is %q: set %sauth = "xoauth2" (Microsoft 365, Google) or "oauthbearer"`, sc.key, u.Auth, sc.key)
		}
		if (u.Auth == "plain" || u.Auth == "login") && u.Username == "" {
			errs.add(sc.key+"auth", "%q needs %susername", u.Auth, sc.key)
		}
		u.resolvePassword(errs, e, sc)
		return
	}
	o := &u.OAuth2
	if u.Username == "" {
		errs.add(sc.key+"username", "must be set with auth = %q: the mailbox the token is for (e.g. relay@example.com)", u.Auth)
	} else if strings.ContainsFunc(u.Username, isSpaceOrControl) {
		// ^A separates the fields of XOAUTH2 and OAUTHBEARER (RFC 7628 §3.1).
		errs.add(sc.key+"username", "%q contains spaces or control characters", u.Username)
	}
	if u.PasswordFile != "" {
		errs.add(sc.key+"password_file", "is not used with auth = %q (the token replaces the password): remove it", u.Auth)
	}
	switch o.Grant {
	case "":
		errs.add(sc.key+"oauth2.grant", `must be set with auth = %q: "client_credentials", "refresh_token" or "jwt"`, u.Auth)
		return
	case GrantClientCredentials, GrantRefreshToken, GrantJWT:
	default:
		errs.add(sc.key+"oauth2.grant", `%q is not one of client_credentials, refresh_token, jwt`, o.Grant)
		return
	}
	for _, f := range []struct{ key, v string }{{sc.key + "oauth2.token_url", o.TokenURL}, {sc.key + "oauth2.device_auth_url", o.DeviceAuthURL}} {
		if f.v == "" {
			continue
		}
		if p, err := url.Parse(f.v); err != nil || p.Scheme != "https" || p.Host == "" {
			errs.add(f.key, "%q is not an https:// URL (the client secret and tokens travel over it)", f.v)
		}
	}
	if o.TokenURL == "" && o.Grant != GrantJWT {
		errs.add(sc.key+"oauth2.token_url", "must be set (Microsoft 365: https://login.microsoftonline.com/TENANT/oauth2/v2.0/token; Google: https://oauth2.googleapis.com/token)")
	}
	if o.ClientID == "" && o.Grant != GrantJWT {
		errs.add(sc.key+"oauth2.client_id", "must be set (the application (client) ID of the app registration)")
	}
	if len(o.Scopes) == 0 {
		errs.add(sc.key+"oauth2.scopes", `must list the scopes (Microsoft 365: ["https://outlook.office365.com/SMTP.Send", "offline_access"], or ["https://outlook.office365.com/.default"] with client_credentials; Google: ["https://mail.google.com/"])`)
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsFunc(s, isSpaceOrControl) {
			errs.add(fmt.Sprintf("%soauth2.scopes[%d]", sc.key, i), "%q is not a scope", s)
		}
	}
	if o.Grant == GrantJWT {
		if o.KeyFile == "" {
			errs.add(sc.key+"oauth2.key_file", "must be set with grant = \"jwt\": the service account key (JSON) downloaded from the Google Cloud console")
		}
		if o.SecretFile != "" {
			errs.add(sc.key+"oauth2.client_secret_file", "is not used with grant = \"jwt\" (the key_file signs the request)")
		}
	} else {
		if o.KeyFile != "" {
			errs.add(sc.key+"oauth2.key_file", "is only used with grant = \"jwt\"")
		}
		if o.Subject != "" {
			errs.add(sc.key+"oauth2.subject", "is only used with grant = \"jwt\"")
		}
	}
	if o.Timeout.Duration < 0 {
		errs.add(sc.key+"oauth2.timeout", "must be 0 (30s) or more")
	}
	if o.Grant != GrantJWT {
		o.resolveSecret(errs, e, sc)
	}
}

// resolveSecret fills ClientSecret from client_secret_file, else from the
// systemd credential "oauth2"; only client_credentials requires one.
func (o *OAuth2) resolveSecret(errs *Errors, e env, sc scope) {
	if e.noSecrets {
		return
	}
	read := func(path string) (string, error) {
		b, err := e.readFile(path)
		if err != nil {
			return "", err
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if s == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return s, nil
	}
	if o.SecretFile != "" {
		s, err := read(o.SecretFile)
		if err != nil {
			errs.add(sc.key+"oauth2.client_secret_file", "cannot read the client secret: %w", err)
			return
		}
		o.ClientSecret = s
		return
	}
	if dir := e.getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		s, err := read(filepath.Join(dir, sc.oauthCred))
		switch {
		case err == nil:
			o.ClientSecret = s
			return
		case !errors.Is(err, fs.ErrNotExist):
			errs.add(sc.key+"oauth2.client_secret_file", "cannot read the systemd credential %q: %w", sc.oauthCred, err)
			return
		}
	}
	if o.Grant == GrantClientCredentials {
		errs.add(sc.key+"oauth2.client_secret_file", `must be set with grant = "client_credentials", or pass the systemd credential %q (LoadCredential=%s:/etc/relayd/%s.secret)`, sc.oauthCred, sc.oauthCred, sc.oauthCred)
	}
}
