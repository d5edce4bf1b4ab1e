package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/BurntSushi/toml"

	"relayd/conf"
	"relayd/sendmail"
)

// runSendmail is the sendmail-compatible command. It needs no running
// daemon: without one the message waits in the maildrop.
func runSendmail(argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// -C FILE selects the config; a bad command line is reported by Main.
	opts, _ := sendmail.ParseArgs(args)
	var set shimSettings
	var setErr error
	loaded := false
	load := func() (shimSettings, error) {
		if !loaded {
			set, setErr = loadShimSettings(configPath(opts.ConfigFile))
			loaded = true
		}
		return set, setErr
	}
	if opts.Mode == sendmail.Deliver || opts.Mode == sendmail.SMTPStdio {
		load() // MaxMessageBytes is needed before Main runs
	}
	deps := sendmail.Deps{
		StateDir: func(string) (string, error) {
			s, err := load()
			return s.stateDir, err
		},
		ListQueue: func(w io.Writer) int { return runQueue(queueArgs("list", opts.ConfigFile), w, stderr) },
		FlushQueue: func() int {
			return runQueue(queueArgs("flush", opts.ConfigFile), io.Discard, stderr)
		},
		MaxMessageBytes: set.maxMessageBytes,
	}
	return sendmail.Main(argv0, args, stdin, stdout, stderr, deps)
}

// queueArgs is "relayd queue CMD", with the config given by sendmail -C.
func queueArgs(cmd, configFile string) []string {
	if configFile == "" {
		return []string{cmd}
	}
	return []string{cmd, "--config", configFile}
}

// shimSettings is all the sendmail command needs from the config.
type shimSettings struct {
	stateDir        string
	maxMessageBytes int64 // 0: no limit
}

// loadShimSettings reads state_dir and listen.max_message_bytes from the
// config at path ("" means the built-in defaults).
//
// It deliberately does not validate the whole file as the daemon does
// (conf.Load): the users who run sendmail (cron jobs, PHP as www-data) cannot
// read the smarthost password file or the DKIM keys, and the systemd
// credential "smarthost" exists only inside the service, so a full load
// fails for them although the shim needs none of it. The daemon validates
// the file; the maildrop pickup re-checks everything the shim sends.
func loadShimSettings(path string) (shimSettings, error) {
	var file struct {
		StateDir *string `toml:"state_dir"`
		Listen   struct {
			MaxMessageBytes *int64 `toml:"max_message_bytes"`
		} `toml:"listen"`
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return shimSettings{}, fmt.Errorf("cannot read config: %w", err)
		}
		if _, err := toml.Decode(string(data), &file); err != nil {
			return shimSettings{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	if file.StateDir != nil && file.Listen.MaxMessageBytes != nil {
		return validShimSettings(shimSettings{stateDir: *file.StateDir, maxMessageBytes: *file.Listen.MaxMessageBytes}, path)
	}
	// Only the defaults are needed: conf.Load("") validates nothing secret.
	def, err := conf.Load("")
	if err != nil {
		return shimSettings{}, err
	}
	s := shimSettings{stateDir: def.StateDir, maxMessageBytes: def.Listen.MaxMessageBytes}
	if file.StateDir != nil {
		s.stateDir = *file.StateDir
	}
	if file.Listen.MaxMessageBytes != nil {
		s.maxMessageBytes = *file.Listen.MaxMessageBytes
	}
	return validShimSettings(s, path)
}

func validShimSettings(s shimSettings, path string) (shimSettings, error) {
	if s.stateDir == "" {
		return shimSettings{}, fmt.Errorf("%s: state_dir is empty", path)
	}
	if s.maxMessageBytes < 0 {
		return shimSettings{}, errors.New(path + ": listen.max_message_bytes must be 0 (no limit) or more")
	}
	return s, nil
}
