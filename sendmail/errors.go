package sendmail

import (
	"fmt"

	"relayd/internal/sysexits"
)

// ExitError is a failure with the process exit code it maps to.
type ExitError struct {
	Code int
	Msg  string
	Err  error // the underlying cause, if any
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *ExitError) Unwrap() error { return e.Err }

func exitf(code int, err error, format string, args ...any) *ExitError {
	return &ExitError{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

// UsageError is a command-line error; it always means exit 64 (EX_USAGE).
type UsageError struct {
	Msg string
}

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) *UsageError {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ExitCode maps any error to a sysexits code: nil is 0, *UsageError is 64,
// *ExitError carries its own, anything else is 75 (retrying is the safe
// default for an unknown failure).
func ExitCode(err error) int {
	if err == nil {
		return sysexits.OK
	}
	var ue *UsageError
	if asErr(err, &ue) {
		return sysexits.Usage
	}
	var ee *ExitError
	if asErr(err, &ee) {
		return ee.Code
	}
	return sysexits.TempFail
}
