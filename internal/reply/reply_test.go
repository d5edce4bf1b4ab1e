package reply

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Reply
	}{
		{"550 5.1.1 <b@example.org>: User unknown", Reply{550, "5.1.1", "<b@example.org>: User unknown"}},
		{"451 4.7.1 Greylisted; 451 4.7.1 try later", Reply{451, "4.7.1", "Greylisted; 451 4.7.1 try later"}},
		{"550-5.1.1 first line; 550 5.1.1 second", Reply{550, "5.1.1", "first line; 550 5.1.1 second"}},
		{"421 Service not available", Reply{421, "", "Service not available"}},
		{"550 4.1.1 class mismatch", Reply{550, "", "4.1.1 class mismatch"}},
		{"552 5.3.4", Reply{552, "5.3.4", ""}},
		{"250", Reply{250, "", ""}},
		{"  554 5.7.1 padded  ", Reply{554, "5.7.1", "padded"}},
		{"554 5.7.1 two\r\nlines", Reply{554, "5.7.1", "two lines"}},
		{"550 5.1234.1 bad subject", Reply{550, "", "5.1234.1 bad subject"}},
		{"550 5.1. odd", Reply{550, "", "5.1. odd"}},
		{"550 5.a.1 odd", Reply{550, "", "5.a.1 odd"}},
		{"dial tcp: connection refused", Reply{0, "", "dial tcp: connection refused"}},
		{"5500 not a code", Reply{0, "", "5500 not a code"}},
		{"650 out of range", Reply{0, "", "650 out of range"}},
		{"", Reply{}},
	}
	for _, c := range cases {
		if got := Parse(c.in); got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// TestFromSMTP pins the one rule for go-smtp's two sentinels: queue and
// cleanup disagreed on EnhancedCodeNotSet before this package existed.
func TestFromSMTP(t *testing.T) {
	cases := []struct {
		se   smtp.SMTPError
		want string
	}{
		{smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}, "550 5.1.1 No such user"},
		{smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "No such user"}, "550 5.0.0 No such user"},
		{smtp.SMTPError{Code: 421, Message: "closing"}, "421 4.0.0 closing"},
		{smtp.SMTPError{Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: "Ok"}, "250 Ok"},
		{smtp.SMTPError{Code: 354, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "go ahead"}, "354 go ahead"},
		{smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "a\r\n  b\tc"}, "451 4.3.0 a b c"},
		{smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}}, "452 4.5.3"},
	}
	for _, c := range cases {
		if got := Format(&c.se); got != c.want {
			t.Errorf("Format(%+v) = %q, want %q", c.se, got, c.want)
		}
	}
	if got := FormatEnhanced(smtp.EnhancedCodeNotSet); got != "" {
		t.Errorf("FormatEnhanced(NotSet) = %q, want none (as received)", got)
	}
	if got := Peer(550, smtp.EnhancedCode{}, "no code"); got != "550 no code" {
		t.Errorf("Peer = %q", got)
	}
}

func TestStatus(t *testing.T) {
	for r, want := range map[Reply]string{
		{550, "5.1.1", ""}:    "5.1.1",
		{550, "4.1.1", ""}:    "",
		{550, "5.1234.1", ""}: "",
		{550, "", ""}:         "",
		{0, "5.1.1", ""}:      "",
	} {
		if got := r.Status(); got != want {
			t.Errorf("%+v.Status() = %q, want %q", r, got, want)
		}
	}
}

func TestParseEnhanced(t *testing.T) {
	good := map[string]smtp.EnhancedCode{"5.1.1": {5, 1, 1}, "2.0.0": {2, 0, 0}, "4.123.999": {4, 123, 999}}
	for s, want := range good {
		if got, ok := ParseEnhanced(s); !ok || got != want {
			t.Errorf("ParseEnhanced(%q) = %v %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "5.1", "5.1.1.1", "3.1.1", "5..1", "5.1.1234", "5.+1.1", "5.1.-1", "05.1.1"} {
		if _, ok := ParseEnhanced(s); ok {
			t.Errorf("ParseEnhanced(%q) accepted", s)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":            "plain text",
		"  a \r\n b\t\tc  ":     "a b c",
		"esc\x1b[31m red":       "esc [31m red",
		"nel\u0085here":         "nel here",
		"nbsp\u00a0and\u2028ls": "nbsp and ls",
		"bad\xffutf8":           "bad\uFFFDutf8",
		"jörg ä":                "jörg ä",
		"":                      "",
		"\r\n":                  "",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzReply: Parse never panics and always yields a one-line text, and
// Parse(String(r)) == r for every well-formed reply r.
func FuzzReply(f *testing.F) {
	f.Add(550, "5.1.1", "No such user", "550 5.1.1 x")
	f.Add(250, "", "Ok", "250-first\r\n250 second")
	f.Add(0, "", "dial tcp: refused", "")
	f.Add(421, "4.7.0", "a\r\nb", "421 4.7.0")
	f.Fuzz(func(t *testing.T, code int, enh, text, line string) {
		p := Parse(line)
		if p.Text != OneLine(p.Text) || !utf8.ValidString(p.Text) {
			t.Fatalf("Parse(%q).Text = %q is not one line", line, p.Text)
		}
		if p.Enhanced != "" && p.Status() != p.Enhanced {
			t.Fatalf("Parse(%q) took an enhanced code %q of another class", line, p.Enhanced)
		}
		_ = Parse(p.String())

		// A well-formed reply: a code 200-599 (or none, with text that
		// is not itself a reply), an enhanced code of its class or none,
		// one-line text that does not begin with an enhanced code.
		r := Reply{Code: code, Enhanced: enh, Text: OneLine(text)}
		if code != 0 && (code < 200 || code > 599) {
			return
		}
		if code == 0 && (enh != "" || Parse(r.Text).Code != 0) {
			return
		}
		if enh != "" && (code == 0 || r.Status() != enh) {
			return
		}
		if first, _, _ := strings.Cut(r.Text, " "); enh == "" && code != 0 {
			if _, ok := ParseEnhanced(first); ok && int(first[0]-'0') == code/100 {
				return
			}
		}
		if got := Parse(r.String()); got != r {
			t.Fatalf("Parse(%q) = %+v, want %+v", r.String(), got, r)
		}
	})
}
