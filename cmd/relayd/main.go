// Command relayd is a small outbound SMTP relay: it accepts mail from local
// applications, completes and DKIM-signs it, keeps it in a durable queue and
// forwards it through an authenticated smarthost.
//
// This package only wires the other packages together and parses command
// lines; invoked as "sendmail", "mailq" or "newaliases" it behaves as those.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"relayd/internal/sysexits"
)

// exitFailure is relayd check's "something is wrong" (the sysexits.h
// codes, internal/sysexits, are for everything else).
const exitFailure = 1

const usage = `usage: relayd COMMAND [ARGS]

commands:
  serve [--config FILE]          run the daemon
  sendmail [FLAGS] [RCPT...]     sendmail-compatible submission (also argv[0] "sendmail")
  queue list [--json]            list the queue (also "mailq")
  queue show ID | flush [ID...] | delete ID...|--all | hold ID... | release ID... | bounce ID...
  reload                         make the running daemon re-read its config
  check [--config FILE] [--resolver HOST:PORT] [--no-dns] [--no-smarthost] [--json]
                                 check config, smarthost and DNS; exit 1 on any FAIL
  dkim keygen|dns ...            DKIM keys and their DNS records
  passwd                         print a bcrypt hash (password on stdin) for [[users]]
  oauth2 login [--config FILE]   sign the smarthost mailbox in once (OAuth2 device code)
  config example                 print an annotated example config
  version                        print the version

The config file is --config FILE, else $RELAYD_CONFIG, else /etc/relayd/relayd.toml
if it exists, else built-in defaults.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch filepath.Base(argv[0]) {
	case "sendmail":
		return runSendmail(argv[0], argv[1:], stdin, stdout, stderr)
	case "mailq":
		return runQueue(append([]string{"list"}, argv[1:]...), stdout, stderr)
	case "newaliases":
		return sysexits.OK // no alias database: local names map through [rewrite]
	}
	if len(argv) < 2 {
		fmt.Fprint(stderr, usage)
		return sysexits.Usage
	}
	args := argv[2:]
	switch argv[1] {
	case "serve":
		return runServe(args, stderr)
	case "sendmail":
		return runSendmail("sendmail", args, stdin, stdout, stderr)
	case "queue":
		return runQueue(args, stdout, stderr)
	case "reload":
		return runReload(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "dkim":
		return runDKIM(args, stdout, stderr)
	case "passwd":
		return runPasswd(args, stdin, stdout, stderr)
	case "oauth2":
		return runOAuth2(args, stdout, stderr)
	case "config":
		return runConfig(args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "relayd", version)
		return sysexits.OK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return sysexits.OK
	}
	fmt.Fprintf(stderr, "relayd: unknown command %q\n\n%s", argv[1], usage)
	return sysexits.Usage
}
