package main

// relayd oauth2 login: the device authorization grant (RFC 8628), run once
// on a box without a browser so that relayd serve has a refresh token for
// grant = "refresh_token". The user opens the verification URL on any
// device, enters the code and signs in as the smarthost mailbox; the
// refresh token is stored in state_dir/oauth2/USERNAME.json (mode 0600,
// owned by the state_dir's owner when run as root). The token itself is
// never printed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"relayd/conf"
	"relayd/internal/sysexits"
	"relayd/token"
	"relayd/upstream"
)

// loginTimeout bounds the whole sign-in (providers' codes live 15 minutes).
const loginTimeout = 20 * time.Minute

// newTokenSource builds the token source of [upstream.oauth2].
func newTokenSource(cfg *conf.Config, log *slog.Logger) (*token.Source, error) {
	u := cfg.Upstream
	o := u.OAuth2
	roots, err := upstream.LoadCAFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s: upstream.oauth2.ca_file: %w", cfg.Source, err)
	}
	subject := o.Subject
	if subject == "" {
		subject = u.Username
	}
	ts, err := token.New(token.Config{
		Grant:         o.Grant,
		TokenURL:      o.TokenURL,
		DeviceAuthURL: o.DeviceAuthURL,
		ClientID:      o.ClientID,
		ClientSecret:  o.ClientSecret,
		Scopes:        o.Scopes,
		StoreFile:     tokenStoreFile(cfg),
		KeyFile:       o.KeyFile,
		Subject:       subject,
		RootCAs:       roots,
		Timeout:       o.Timeout.Duration,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: upstream.oauth2: %w", cfg.Source, err)
	}
	return ts, nil
}

// tokenStoreFile is where the refresh token of upstream.username is kept.
func tokenStoreFile(cfg *conf.Config) string {
	return filepath.Join(cfg.StateDir, "oauth2", token.FileName(cfg.Upstream.Username))
}

func runOAuth2(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "login" {
		fmt.Fprintln(stderr, "usage: relayd oauth2 login [--config FILE]")
		return sysexits.Usage
	}
	fs := flagSet("oauth2 login", stderr)
	cfgFlag := fs.String("config", "", "config `FILE` (default $RELAYD_CONFIG or "+defaultConfigPath+")")
	if err := fs.Parse(args[1:]); err != nil {
		return sysexits.Usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relayd oauth2 login: unexpected argument %q\n", fs.Arg(0))
		return sysexits.Usage
	}
	path := configPath(*cfgFlag)
	cfg, ok := loadConfig(path, stderr)
	if !ok {
		return sysexits.Config
	}
	u := cfg.Upstream
	switch {
	case !u.OAuth():
		fmt.Fprintf(stderr, "relayd oauth2 login: upstream.auth is %q in %s: set auth = \"xoauth2\" and an [upstream.oauth2] table first (see the README)\n", u.Auth, orDefaults(path))
		return sysexits.Config
	case u.OAuth2.Grant != conf.GrantRefreshToken:
		fmt.Fprintf(stderr, "relayd oauth2 login: grant = %q needs no sign-in: relayd gets its tokens by itself (relayd check tests it)\n", u.OAuth2.Grant)
		return sysexits.Usage
	case u.OAuth2.DeviceAuthURL == "":
		fmt.Fprintf(stderr, "relayd oauth2 login: set upstream.oauth2.device_auth_url in %s (Microsoft 365: https://login.microsoftonline.com/TENANT-ID/oauth2/v2.0/devicecode; Google: https://oauth2.googleapis.com/device/code)\n", orDefaults(path))
		return sysexits.Config
	}
	ts, err := newTokenSource(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "relayd oauth2 login: %v\n", err)
		return sysexits.Config
	}
	defer ts.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	err = ts.Login(ctx, func(p token.Prompt) {
		fmt.Fprintf(stdout, "To let relayd send as %s, open this address in a browser on any device:\n\n    %s\n\nand enter the code:\n\n    %s\n\n", u.Username, p.VerificationURI, p.UserCode)
		if p.VerificationURIComplete != "" {
			fmt.Fprintf(stdout, "(or open %s directly)\n", p.VerificationURIComplete)
		}
		fmt.Fprintf(stdout, "Sign in as %s", u.Username)
		if p.ExpiresIn != "" {
			fmt.Fprintf(stdout, " within %s", p.ExpiresIn)
		}
		fmt.Fprint(stdout, ". Waiting for the sign-in...\n")
	})
	if err != nil {
		var te *token.Error
		if errors.As(err, &te) && te.Hint() != "" {
			fmt.Fprintf(stderr, "relayd oauth2 login: %v\nfix: %s\n", err, te.Hint())
		} else {
			fmt.Fprintf(stderr, "relayd oauth2 login: %v\n", err)
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "Signed in. The refresh token is stored in %s (mode 0600); relayd serve uses it from now on (a running daemon picks it up at its next delivery). Test it with: relayd check\n", ts.StoreFile())
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(cfg.StateDir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
				fmt.Fprintf(stdout, "note: %s belongs to root; if relayd serve runs as another user, chown -R that user %s\n", cfg.StateDir, filepath.Dir(ts.StoreFile()))
			}
		}
	}
	return sysexits.OK
}
