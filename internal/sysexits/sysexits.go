// Package sysexits holds the process exit codes of BSD sysexits.h, which
// sendmail-compatible callers (cron, mail(1), scripts) interpret: the
// sendmail shim and every relayd subcommand use these and no other
// numbers, except 1 for "relayd check found a problem".
package sysexits

const (
	OK          = 0
	Usage       = 64 // EX_USAGE: command line usage error
	DataErr     = 65 // EX_DATAERR: data format error (bad input message)
	NoUser      = 67 // EX_NOUSER: addressee unknown
	Unavailable = 69 // EX_UNAVAILABLE: service unavailable (permanent refusal)
	Software    = 70 // EX_SOFTWARE: internal software error
	CantCreate  = 73 // EX_CANTCREAT: cannot create an output file
	TempFail    = 75 // EX_TEMPFAIL: temporary failure, the caller should retry
	Config      = 78 // EX_CONFIG: configuration error
)
