package sendmail

import "strings"

func contains(s, sub string) bool      { return strings.Contains(s, sub) }
func containsAny(s, chars string) bool { return strings.ContainsAny(s, chars) }

// splitUnit splits a fuzz string into arguments at the ASCII unit separator.
func splitUnit(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x1f")
}
