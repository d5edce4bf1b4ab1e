package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayd/dnscheck"
	"relayd/internal/oauthtest"
	"relayd/internal/smtptest"
	"relayd/token"
)

// oauthCheckSetup is a token endpoint, a smarthost accepting its tokens,
// and a config for grant (client_credentials or refresh_token).
type oauthCheckSetup struct {
	ts     *oauthtest.Server
	sh     *smtptest.Server
	dir    string
	secret string
}

func newOAuthCheck(t *testing.T) *oauthCheckSetup {
	ts := oauthtest.New(t, oauthtest.Options{})
	s := &oauthCheckSetup{ts: ts, dir: t.TempDir()}
	s.sh = smtptest.New(t, smtptest.Options{RequireTLS: true, OAuth: ts.Valid})
	s.secret = filepath.Join(s.dir, "oauth2.secret")
	if err := os.WriteFile(s.secret, []byte(ts.ClientSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *oauthCheckSetup) config(t *testing.T, grant string) string {
	up := fmt.Sprintf("address = %q\nca_file = %q\nusername = %q\nauth = \"xoauth2\"\ntimeout = \"5s\"\n"+
		"[upstream.oauth2]\ngrant = %q\ntoken_url = %q\ndevice_auth_url = %q\nclient_id = %q\nclient_secret_file = %q\n"+
		"scopes = [\"https://outlook.office365.com/.default\"]\nca_file = %q\ntimeout = \"5s\"\n",
		s.sh.Addr(), s.sh.CA().WritePEM(t), s.ts.Mailbox(), grant, s.ts.TokenURL(), s.ts.DeviceAuthURL(),
		s.ts.ClientID(), s.secret, s.ts.CA().WritePEM(t))
	return checkSetup{dir: s.dir, upstream: up}.write(t)
}

func (s *oauthCheckSetup) seed(t *testing.T) {
	rt := s.ts.SeedRefreshToken()
	path := filepath.Join(s.dir, "spool", "oauth2", token.FileName(s.ts.Mailbox()))
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, []byte(`{"refresh_token":"`+rt+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckOAuth2(t *testing.T) {
	tests := []struct {
		name  string
		grant string
		setup func(s *oauthCheckSetup)
		want  string // in the oauth2 token or smarthost FAIL line; "" = all OK
		fix   string
	}{
		{name: "good client_credentials", grant: "client_credentials"},
		{name: "good refresh_token", grant: "refresh_token"},
		{name: "endpoint down", grant: "client_credentials", setup: func(s *oauthCheckSetup) { s.ts.Stop() },
			want: "token endpoint unreachable: ", fix: "oauth2.token_url"},
		{name: "wrong secret", grant: "client_credentials",
			setup: func(s *oauthCheckSetup) { os.WriteFile(s.secret, []byte("wrong\n"), 0o600) },
			want:  "client rejected (invalid_client): ", fix: "oauth2.client_secret_file"},
		{name: "consent missing", grant: "refresh_token",
			setup: func(s *oauthCheckSetup) {
				s.ts.SetFault(oauthtest.Fault{Status: 400, Code: "invalid_grant", Description: "AADSTS65001: The user or administrator has not consented to use the application."})
			},
			want: "consent missing: ", fix: "Grant admin consent"},
		{name: "refresh token revoked", grant: "refresh_token", setup: func(s *oauthCheckSetup) { s.ts.RevokeAll() },
			want: "refresh token expired or revoked: ", fix: "relayd oauth2 login --config "},
		{name: "no refresh token", grant: "refresh_token",
			setup: func(s *oauthCheckSetup) { os.RemoveAll(filepath.Join(s.dir, "spool", "oauth2")) },
			want:  "no refresh token stored yet", fix: "relayd oauth2 login"},
		{name: "smarthost refuses", grant: "client_credentials",
			setup: func(s *oauthCheckSetup) { s.sh.SetFaults(smtptest.Faults{AuthFail: true}) },
			want:  `the smarthost refused the XOAUTH2 login: 535 `, fix: "Set-CASMailbox"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newOAuthCheck(t)
			cfg := s.config(t, tc.grant)
			if tc.grant == "refresh_token" {
				s.seed(t)
			}
			if tc.setup != nil {
				tc.setup(s)
			}
			out, code := check(t, "--config", cfg, "--no-dns")
			t.Log(out)
			if strings.Contains(out, s.ts.ClientSecret()) || strings.Contains(out, "rt-") {
				t.Errorf("a secret in the output:\n%s", out)
			}
			fails := lines(out, "FAIL")
			if tc.want == "" {
				if code != 0 || len(fails) != 0 || !strings.Contains(out, "OK oauth2 token 127.0.0.1:") ||
					!strings.Contains(out, "AUTH XOAUTH2 with an OAuth2 token accepted for relay@example.com") {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				if len(s.sh.Messages()) != 0 || s.sh.Logins() != 1 {
					t.Errorf("messages %d logins %d", len(s.sh.Messages()), s.sh.Logins())
				}
				return
			}
			if code != 1 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			found := false
			for _, f := range fails {
				finding, fix, _ := strings.Cut(f, " Fix: ")
				if strings.Contains(finding, tc.want) && strings.Contains(fix, tc.fix) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no FAIL with %q and fix %q:\n%s", tc.want, tc.fix, out)
			}
		})
	}
}

// Outside the service the credential "oauth2" does not exist: check reads
// its source file, as systemd would for the service.
func TestCheckReadsOAuthSecretSource(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	s := newOAuthCheck(t)
	cfg := s.config(t, "client_credentials")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), fmt.Sprintf("client_secret_file = %q\n", s.secret), "", 1)), 0o644)
	c := &checker{path: cfg, noDNS: true, now: time.Now, euid: os.Geteuid(), oauthSecretSource: s.secret}
	var sawOK, sawToken bool
	for _, f := range c.run(context.Background()) {
		if f.Level == dnscheck.Fail {
			t.Errorf("FAIL: %v", f)
		}
		sawOK = sawOK || f.What == "oauth2 client secret" && f.Level == dnscheck.OK
		sawToken = sawToken || strings.HasPrefix(f.What, "oauth2 token") && f.Level == dnscheck.OK
	}
	if !sawOK || !sawToken {
		t.Errorf("secret source OK %v, token OK %v", sawOK, sawToken)
	}
}
