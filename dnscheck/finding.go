package dnscheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Level is the severity of a Finding.
type Level string

// Levels, from good to bad. `relayd check` exits 1 when any finding is FAIL.
const (
	OK   Level = "OK"
	Warn Level = "WARN"
	Fail Level = "FAIL"
)

// Finding is the result of one check.
type Finding struct {
	Level   Level  `json:"level"`
	What    string `json:"what"`          // the record or name checked, e.g. "SPF example.com"
	Finding string `json:"finding"`       // what was found, one sentence
	Fix     string `json:"fix,omitempty"` // the exact action; empty for OK
}

// String renders "LEVEL what: finding. Fix: exact action" (no Fix part for
// OK or when there is no fix).
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(string(f.Level))
	b.WriteByte(' ')
	b.WriteString(f.What)
	b.WriteString(": ")
	b.WriteString(strings.TrimSuffix(f.Finding, "."))
	b.WriteByte('.')
	if f.Level != OK && f.Fix != "" {
		b.WriteString(" Fix: ")
		b.WriteString(f.Fix)
	}
	return b.String()
}

// Format writes one line per finding.
func Format(w io.Writer, fs []Finding) {
	for _, f := range fs {
		fmt.Fprintln(w, f.String())
	}
}

// FormatJSON writes the findings as one JSON array (an empty array, not
// null, when there are none).
func FormatJSON(w io.Writer, fs []Finding) error {
	if fs == nil {
		fs = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(fs); err != nil {
		return fmt.Errorf("dnscheck: encoding findings: %w", err)
	}
	return nil
}

// Failed reports whether any finding is FAIL.
func Failed(fs []Finding) bool {
	for _, f := range fs {
		if f.Level == Fail {
			return true
		}
	}
	return false
}

func newOK(what, format string, a ...any) Finding {
	return Finding{Level: OK, What: what, Finding: fmt.Sprintf(format, a...)}
}

func newWarn(what, fix, format string, a ...any) Finding {
	return Finding{Level: Warn, What: what, Finding: fmt.Sprintf(format, a...), Fix: fix}
}

func newFail(what, fix, format string, a ...any) Finding {
	return Finding{Level: Fail, What: what, Finding: fmt.Sprintf(format, a...), Fix: fix}
}
