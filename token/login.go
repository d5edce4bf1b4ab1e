package token

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// Prompt is what the user must do to approve the device (RFC 8628 §3.3).
type Prompt struct {
	VerificationURI         string
	VerificationURIComplete string // may be empty
	UserCode                string
	ExpiresIn               string // e.g. "15m0s", "" if not given
}

// Login runs the device authorization grant (RFC 8628) for a Source of
// grant refresh_token: it asks for a device code, calls prompt with what
// the user must do, polls the token endpoint until the user approved (or
// ctx ends or the code expires), and saves the refresh token to the store
// file. The access token it also gets is kept in memory.
func (s *Source) Login(ctx context.Context, prompt func(Prompt)) error {
	if s.cfg.Grant != GrantRefreshToken {
		return fmt.Errorf("token: relayd oauth2 login is for grant = \"refresh_token\" (this one is %q, which needs no login)", s.cfg.Grant)
	}
	if s.cfg.DeviceAuthURL == "" {
		return errors.New("token: oauth2.device_auth_url is not set")
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	oc := s.oauthConfig()
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		return classify(GrantDevice, err)
	}
	p := Prompt{VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete, UserCode: da.UserCode}
	if !da.Expiry.IsZero() {
		p.ExpiresIn = da.Expiry.Sub(s.cfg.Clock()).Round(1e9).String()
	}
	prompt(p)
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("token: the code expired before the sign-in was completed: run relayd oauth2 login again")
		}
		return classify(GrantDevice, err)
	}
	if tok.RefreshToken == "" {
		return errors.New("token: the provider returned no refresh token: add the scope offline_access (Microsoft) to oauth2.scopes")
	}
	unlock, err := lockStore(s.cfg.StoreFile)
	if err == nil {
		err = s.save(tok.RefreshToken)
		unlock()
	}
	if err != nil {
		return &Error{Kind: KindLocal, Err: fmt.Errorf("cannot store the refresh token in %s: %w", s.cfg.StoreFile, err),
			hint: "run relayd oauth2 login as root or as the user relayd serve runs as"}
	}
	s.mu.Lock()
	s.unsaved, s.lastErr = "", nil
	if tok.AccessToken != "" && !tok.Expiry.IsZero() {
		s.tok, s.obtained = tok, s.cfg.Clock()
	}
	s.mu.Unlock()
	return nil
}

// StoreFile is where the refresh token is kept.
func (s *Source) StoreFile() string { return s.cfg.StoreFile }
