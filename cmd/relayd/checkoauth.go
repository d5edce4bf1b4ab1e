package main

// relayd check, OAuth2 part: get a token the way the daemon would and tell
// apart why it fails (token endpoint unreachable, client rejected, consent
// missing, refresh token expired or revoked, none stored yet); then the
// smarthost probe logs in with a token and a refusal there is reported as
// the smarthost's. No token or secret is ever printed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"relayd/conf"
	"relayd/dnscheck"
	"relayd/token"
	"relayd/upstream"
)

// oauthSecretSource is where the README's LoadCredential=oauth2 drop-in
// reads the client secret from.
const oauthSecretSource = "/etc/relayd/oauth2.secret"

// onlyMissingClientSecret reports whether the config's only problem is the
// client secret of the systemd credential "oauth2", which exists only
// inside the service.
func onlyMissingClientSecret(err error) bool {
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		return false
	}
	var p *conf.Problem
	return errors.As(errs[0], &p) && p.Key == "upstream.oauth2.client_secret_file" && strings.Contains(p.Err.Error(), `systemd credential "oauth2"`) &&
		strings.HasPrefix(p.Err.Error(), "must be set")
}

// loadWithClientSecret loads the config with the client secret read from
// oauthSecretSource (root can read it), as the service would get it.
func (c *checker) loadWithClientSecret() (*conf.Config, error) {
	sec := readSecret(c.oauthSecretSource)
	if sec == "" {
		return conf.Load(c.path)
	}
	cfg, err := conf.LoadClient(c.path)
	if err != nil {
		return nil, err
	}
	cfg.Upstream.OAuth2.ClientSecret = sec
	c.ok("oauth2 client secret", "read from %s, the source of the service's credential \"oauth2\"", c.oauthSecretSource)
	return cfg, nil
}

// oauthToken fetches one access token (not shown) and reports the result.
func (c *checker) oauthToken(ctx context.Context, cfg *conf.Config) {
	o := cfg.Upstream.OAuth2
	what := "oauth2 token"
	if p, err := url.Parse(o.TokenURL); err == nil && p.Host != "" {
		what += " " + p.Host
	}
	ts, err := newTokenSource(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return // build() reported it as a config problem
	}
	defer ts.Close()
	tctx, cancel := context.WithTimeout(ctx, checkProbeTimeout)
	defer cancel()
	if _, err := ts.Check(tctx); err != nil {
		f := diagnoseToken(err, cfg, c.path)
		f.What = what
		c.out = append(c.out, f)
		return
	}
	c.ok(what, "grant %s: access token obtained for %s (not shown)", o.Grant, cfg.Upstream.Username)
}

// diagnoseToken turns a token failure into a finding.
func diagnoseToken(err error, cfg *conf.Config, path string) dnscheck.Finding {
	f := dnscheck.Finding{Level: dnscheck.Fail}
	var te *token.Error
	if !errors.As(err, &te) {
		f.Finding, f.Fix = err.Error(), "check [upstream.oauth2]"
		return f
	}
	f.Fix = te.Hint()
	login := "relayd oauth2 login"
	if path != "" && path != defaultConfigPath {
		login += " --config " + path
	}
	switch te.Kind {
	case token.KindUnreachable:
		f.Finding = "token endpoint unreachable: " + te.Error()
	case token.KindServerError:
		f.Finding = fmt.Sprintf("token endpoint failing (HTTP %d): %s; mail would be deferred", te.Status, te.Error())
	case token.KindInvalidClient:
		f.Finding = "client rejected (invalid_client): " + te.Error()
	case token.KindConsentRequired:
		f.Finding = "consent missing: " + te.Error()
	case token.KindInvalidGrant:
		f.Finding = "refresh token expired or revoked: " + te.Error()
		f.Fix = "sign in again: " + login
	case token.KindNoRefreshToken:
		f.Finding = "no refresh token stored yet (" + tokenStoreFile(cfg) + ")"
		f.Fix = "sign in once: " + login
	default:
		f.Finding = "token request refused: " + te.Error()
	}
	return f
}

// diagnoseLogin is diagnose with the OAuth2 login failures told apart.
func diagnoseLogin(e *upstream.Error, cfg *conf.Config) dnscheck.Finding {
	if !cfg.Upstream.OAuth() || e.Stage != upstream.StageAuth {
		return diagnose(e, cfg)
	}
	f := dnscheck.Finding{Level: dnscheck.Fail, What: "smarthost " + e.Addr}
	var te *token.Error
	switch {
	case errors.As(e, &te):
		f.Finding = "login not tried: no OAuth2 token (" + string(te.Kind) + ")"
		f.Fix = "fix the oauth2 token finding first"
	case e.Code != 0:
		f.Finding = fmt.Sprintf("the smarthost refused the %s login: %s", strings.ToUpper(cfg.Upstream.Auth), replyLine(e))
		if status := e.OAuthStatus(); status != "" {
			f.Finding += fmt.Sprintf(" (error status %q)", status)
		}
		f.Fix = e.Fix()
	default:
		return diagnose(e, cfg)
	}
	return f
}
