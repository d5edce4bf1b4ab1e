package main

import (
	"fmt"
	"io"
	"log/slog"
)

// runCheck validates the configuration; DNS and smarthost checks are added
// by the dnscheck wiring.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("check", stderr)
	cfgFlag := fs.String("config", "", "config `FILE`")
	fs.Bool("no-dns", false, "skip DNS checks")
	fs.Bool("no-smarthost", false, "skip the smarthost probe")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	path := configPath(*cfgFlag)
	cfg, ok := loadConfig(path, stderr)
	if !ok {
		return exitFailure
	}
	if _, errs := build(cfg, slog.New(slog.DiscardHandler)); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(stdout, "FAIL config: %v\n", e)
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "OK config: %s is valid\n", orDefaults(path))
	return exitOK
}
