package conf

import (
	"fmt"
	"strings"
)

// Problem is one configuration error, located by file, key and (when the
// TOML decoder knows it) line. Its text is "FILE: KEY: problem".
type Problem struct {
	File string // "" for a config not read from a file
	Line int    // 0 when unknown
	Key  string // e.g. "queue.max_age", "users[1].password_hash"; "" for syntax errors
	Err  error
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(": ")
	}
	switch {
	case p.Key != "":
		b.WriteString(p.Key)
		b.WriteString(": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	b.WriteString(p.Err.Error())
	if p.Key != "" && p.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.Line)
	}
	return b.String()
}

func (p *Problem) Unwrap() error { return p.Err }

// Errors is every problem found in a configuration, in a stable order.
type Errors []error

// Error joins the problems, one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look at each problem.
func (e Errors) Unwrap() []error { return e }

// add records a problem for key.
func (e *Errors) add(key string, format string, args ...any) {
	*e = append(*e, &Problem{Key: key, Err: fmt.Errorf(format, args...)})
}

// inFile sets File on every Problem that has none.
func (e Errors) inFile(file string) {
	for _, err := range e {
		if p, ok := err.(*Problem); ok && p.File == "" {
			p.File = file
		}
	}
}
