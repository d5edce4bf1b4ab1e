package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"relayd/internal/sysexits"
	"relayd/signer"
)

// defaultDKIMDir is where keygen puts keys unless --out says otherwise.
const defaultDKIMDir = "/etc/relayd/dkim"

const dkimUsage = `usage:
  relayd dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--bits 2048] [--out FILE]
  relayd dkim dns [--config FILE]
`

// runDKIM implements "relayd dkim keygen" and "relayd dkim dns".
func runDKIM(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dkimUsage)
		return sysexits.Usage
	}
	switch args[0] {
	case "keygen":
		return dkimKeygen(args[1:], defaultDKIMDir, stdout, stderr)
	case "dns":
		return dkimDNS(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, dkimUsage)
		return sysexits.OK
	}
	fmt.Fprintf(stderr, "relayd dkim: unknown command %q\n%s", args[0], dkimUsage)
	return sysexits.Usage
}

// dkimKeygen writes a new private key (mode 0600, never over an existing
// file) and prints its DNS record and the next steps.
func dkimKeygen(args []string, dir string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("relayd dkim keygen", flag.ContinueOnError)
	flags.SetOutput(stderr)
	domain := flags.String("domain", "", "signing `DOMAIN` (d=), e.g. example.com")
	selector := flags.String("selector", "", "`SELECTOR` (s=), e.g. s2026")
	alg := flags.String("algorithm", signer.AlgRSA, "key `ALGORITHM`: rsa or ed25519")
	bits := flags.Int("bits", 2048, "RSA key size in bits (2048..4096)")
	out := flags.String("out", "", "private key `FILE` (default "+dir+"/DOMAIN.SELECTOR.pem)")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return sysexits.OK
		}
		return sysexits.Usage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "relayd dkim keygen: "+format+"\n", a...)
		flags.Usage()
		return sysexits.Usage
	}
	if flags.NArg() > 0 {
		return bad("unexpected argument %q", flags.Arg(0))
	}
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(*domain), "."))
	if d == "" || strings.ContainsAny(d, " /\\") || !strings.Contains(d, ".") {
		return bad("--domain must be a domain name such as example.com")
	}
	if *selector == "" || strings.ContainsAny(*selector, " /\\") {
		return bad("--selector must be a DNS label such as s2026")
	}
	explicitBits := false
	flags.Visit(func(f *flag.Flag) { explicitBits = explicitBits || f.Name == "bits" })
	n := *bits
	switch *alg {
	case signer.AlgRSA:
		if n < 2048 || n > 4096 {
			return bad("--bits must be between 2048 and 4096")
		}
	case signer.AlgEd25519:
		if explicitBits {
			return bad("--bits applies to rsa keys only")
		}
		n = 0
	default:
		return bad("--algorithm must be rsa or ed25519")
	}
	path := *out
	if path == "" {
		path = filepath.Join(dir, d+"."+*selector+".pem")
	}

	pemBytes, txt, err := signer.GenerateKey(*alg, n)
	if err != nil {
		fmt.Fprintf(stderr, "relayd dkim keygen: %v\n", err)
		return exitFailure
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		fmt.Fprintf(stderr, "relayd dkim keygen: cannot create %s: %v\n", filepath.Dir(path), err)
		return sysexits.CantCreate
	}
	if err := signer.WriteKeyFile(path, pemBytes); err != nil {
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintf(stderr, "relayd dkim keygen: %s already exists; not overwriting it (choose a new --selector or --out)\n", path)
		} else {
			fmt.Fprintf(stderr, "relayd dkim keygen: cannot write %s: %v\n", path, err)
		}
		return sysexits.CantCreate
	}
	fmt.Fprintf(stdout, "; private key written to %s (mode 0600)\n", path)
	fmt.Fprintln(stdout, signer.ZoneRecord(d, *selector, txt))
	fmt.Fprintf(stdout, `; next steps:
;  1. publish this record in the DNS zone of %[1]s
;  2. let the daemon read the key: chown relayd: %[3]s
;  3. add to relayd.toml, then run "relayd check" and "relayd reload":
;       [[dkim]]
;       domain = %[1]q
;       selector = %[2]q
;       key_file = %[3]q
`, d, *selector, path)
	return sysexits.OK
}

// dkimDNS prints the DNS record of every configured key.
func dkimDNS(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("relayd dkim dns", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cfgFlag := flags.String("config", "", "config `FILE` (default $RELAYD_CONFIG or "+defaultConfigPath+")")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return sysexits.OK
		}
		return sysexits.Usage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "relayd dkim dns: unexpected argument %q\n", flags.Arg(0))
		return sysexits.Usage
	}
	path := configPath(*cfgFlag)
	cfg, ok := loadClientConfig(path, stderr)
	if !ok {
		return sysexits.Config
	}
	if len(cfg.DKIM) == 0 {
		fmt.Fprintln(stderr, "relayd dkim dns: no [[dkim]] keys configured; create one with: relayd dkim keygen --domain D --selector S")
		return exitFailure
	}
	s, errs := signer.Load(dkimEntries(cfg.DKIM), signer.Options{})
	for _, k := range s.Keys() {
		fmt.Fprintf(stdout, "; %s key %s (%d bits)\n%s\n", k.Algorithm, k.File, k.Bits, signer.ZoneRecord(k.Domain, k.Selector, k.TXT()))
	}
	for _, err := range errs {
		fmt.Fprintf(stderr, "relayd dkim dns: %v\n", err)
	}
	if len(errs) > 0 {
		return exitFailure
	}
	return sysexits.OK
}
