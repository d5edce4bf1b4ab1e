package main

import (
	"io"
	"os"

	"relayd/conf"
	"relayd/control"
	"relayd/sendmail"
)

// runSendmail is the sendmail-compatible command. It needs no running
// daemon: without one the message waits in the maildrop.
func runSendmail(argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var maxBytes int64
	if cfg, err := conf.Load(configPath("")); err == nil {
		maxBytes = cfg.Listen.MaxMessageBytes
	}
	deps := sendmail.Deps{
		StateDir: func(configFile string) (string, error) {
			cfg, err := conf.Load(configPath(configFile))
			if err != nil {
				return "", err
			}
			return cfg.StateDir, nil
		},
		ListQueue: func(w io.Writer) int { return runQueue([]string{"list"}, w, stderr) },
		FlushQueue: func() int {
			return runQueue([]string{"flush"}, io.Discard, stderr)
		},
		MaxMessageBytes: maxBytes,
	}
	return sendmail.Main(argv0, args, stdin, stdout, stderr, deps)
}

var _ = control.SocketName
var _ = os.Getuid
