package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"relayd/auth"
	"relayd/conf"
	"relayd/internal/sysexits"
	"relayd/signer"
)

const defaultConfigPath = "/etc/relayd/relayd.toml"

// configPath picks the config file: the flag, then $RELAYD_CONFIG, then the
// default path if it exists, else "" (built-in defaults).
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("RELAYD_CONFIG"); env != "" {
		return env
	}
	if _, err := os.Stat(defaultConfigPath); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return defaultConfigPath
	}
	return ""
}

// loadConfig loads the config and prints every problem on failure.
func loadConfig(path string, stderr io.Writer) (*conf.Config, bool) {
	cfg, err := conf.Load(path)
	if err != nil {
		printProblems(stderr, path, err)
		return nil, false
	}
	return cfg, true
}

// loadClientConfig is loadConfig for commands that only talk to the daemon
// or read the spool: the smarthost password is not needed (and under
// systemd exists only inside the service).
func loadClientConfig(path string, stderr io.Writer) (*conf.Config, bool) {
	cfg, err := conf.LoadClient(path)
	if err != nil {
		printProblems(stderr, path, err)
		return nil, false
	}
	return cfg, true
}

func printProblems(w io.Writer, path string, err error) {
	where := path
	if where == "" {
		where = "built-in defaults"
	}
	fmt.Fprintf(w, "relayd: configuration %s has problems:\n", where)
	var list interface{ Unwrap() []error }
	if errors.As(err, &list) {
		for _, e := range list.Unwrap() {
			fmt.Fprintf(w, "  %v\n", e)
		}
		return
	}
	fmt.Fprintf(w, "  %v\n", err)
}

// newHandler builds the log handler from [log]: "json" or text, at the
// level held in lv (so a reload can change it).
func newHandler(c conf.Log, w io.Writer, lv *slog.LevelVar) slog.Handler {
	opts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(c.Format, "json") {
		return withTrailingAttrs(slog.NewJSONHandler(w, opts))
	}
	return withTrailingAttrs(slog.NewTextHandler(w, opts))
}

// logLevel parses [log] level; conf validated it, info otherwise.
func logLevel(c conf.Log) slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	return level
}

// flagSet returns a flag set that reports to stderr and does not exit.
func flagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relayd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "example" {
		stdout.Write(conf.Example)
		return sysexits.OK
	}
	fmt.Fprintln(stderr, "usage: relayd config example")
	return sysexits.Usage
}

// dkimEntries are the [[dkim]] entries as the signer takes them, in order
// (the signer's errors name dkim[i] by index).
func dkimEntries(ds []conf.DKIM) []signer.Entry {
	es := make([]signer.Entry, len(ds))
	for i, d := range ds {
		es[i] = signer.Entry{Domain: d.Domain, Selector: d.Selector, KeyFile: d.KeyFile}
	}
	return es
}

// authUsers are the [[users]] entries as the authenticator takes them.
func authUsers(us []conf.User) []auth.User {
	as := make([]auth.User, len(us))
	for i, u := range us {
		as[i] = auth.User{Name: u.Name, PasswordHash: u.PasswordHash, Senders: u.Senders}
	}
	return as
}
