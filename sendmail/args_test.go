package sendmail

import (
	"errors"
	"reflect"
	"testing"

	"relayd/internal/sysexits"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Options
	}{
		{"cron", []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			Options{FullName: "CronDaemon", IgnoreDots: true, Recipients: []string{"root"}}},
		{"php default", []string{"-t", "-i"}, Options{ExtractRecipients: true, IgnoreDots: true}},
		{"git send-email", []string{"-i", "a@example.com", "b@example.org"},
			Options{IgnoreDots: true, Recipients: []string{"a@example.com", "b@example.org"}}},
		{"null sender", []string{"-f", "<>", "x@example.com"},
			Options{FromSet: true, From: "", Recipients: []string{"x@example.com"}}},
		{"empty sender attached", []string{"-f", "", "x@example.com"},
			Options{FromSet: true, Recipients: []string{"x@example.com"}}},
		{"sender attached with brackets", []string{"-f<me@example.com>", "x"},
			Options{FromSet: true, From: "me@example.com", Recipients: []string{"x"}}},
		{"-r", []string{"-r", "Me <me@example.com>", "x"},
			Options{FromSet: true, From: "me@example.com", Recipients: []string{"x"}}},
		{"notify never", []string{"-N", "never", "x"}, Options{Notify: "NEVER", Recipients: []string{"x"}}},
		{"notify list", []string{"-Ndelay,failure", "x"}, Options{Notify: "FAILURE,DELAY", Recipients: []string{"x"}}},
		{"double dash", []string{"-i", "--", "-odd@example.com"}, Options{IgnoreDots: true, Recipients: []string{"-odd@example.com"}}},
		{"clustered", []string{"-ti"}, Options{ExtractRecipients: true, IgnoreDots: true}},
		{"cluster ending in value flag", []string{"-tif", "me@example.com"},
			Options{ExtractRecipients: true, IgnoreDots: true, FromSet: true, From: "me@example.com"}},
		{"cluster with attached value", []string{"-itFName Here"},
			Options{ExtractRecipients: true, IgnoreDots: true, FullName: "Name Here"}},
		{"-oi", []string{"-oi", "-odi", "-oQ/var/spool", "x"}, Options{IgnoreDots: true, Recipients: []string{"x"}}},
		{"ignored", []string{"-U", "-L", "tag", "-h", "5", "-eq", "-X", "/tmp/log", "-n", "-m", "-odb", "-B", "7BIT", "x"},
			Options{Recipients: []string{"x"}}},
		{"-bs", []string{"-bs"}, Options{Mode: SMTPStdio}},
		{"-bp", []string{"-bp"}, Options{Mode: ListQueue}},
		{"-bi", []string{"-bi"}, Options{Mode: NoOp}},
		{"-b m separate", []string{"-b", "m", "x"}, Options{Recipients: []string{"x"}}},
		{"-q", []string{"-q"}, Options{Mode: FlushQueue}},
		{"-q1h", []string{"-q1h"}, Options{Mode: FlushQueue}},
		{"config verbose", []string{"-v", "-C", "/etc/r.toml", "x"}, Options{Verbose: true, ConfigFile: "/etc/r.toml", Recipients: []string{"x"}}},
		{"operands end options", []string{"x", "-t"}, Options{Recipients: []string{"x", "-t"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.args)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseArgs(%q)\n got %+v\nwant %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"-Z", "x"}},
		{"unknown in cluster", []string{"-tZ"}},
		{"missing value", []string{"-f"}},
		{"bad -b", []string{"-bd"}},
		{"bad -N", []string{"-N", "sometimes", "x"}},
		{"never plus others", []string{"-N", "never,failure", "x"}},
		{"newline in -f", []string{"-f", "a@b\nBcc: victim@example.com", "x"}},
		{"CR in -F", []string{"-FName\rBcc: v@example.com", "x"}},
		{"NUL in recipient", []string{"a\x00b"}},
		{"newline in recipient", []string{"a@b\nc"}},
		{"-bp with recipients", []string{"-bp", "x"}},
		{"bare -o", []string{"-o"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseArgs(tt.args)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("ParseArgs(%q) = %v, want *UsageError", tt.args, err)
			}
			if ExitCode(err) != sysexits.Usage {
				t.Errorf("exit code %d, want 64", ExitCode(err))
			}
		})
	}
}

func TestInjectionMessageNamesFlag(t *testing.T) {
	_, err := ParseArgs([]string{"-f", "a\nb", "x"})
	if err == nil || !contains(err.Error(), "-f") {
		t.Errorf("error %v does not name -f", err)
	}
	_, err = ParseArgs([]string{"-F", "a\nb", "x"})
	if err == nil || !contains(err.Error(), "-F") {
		t.Errorf("error %v does not name -F", err)
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("-FCronDaemon\x1f-i\x1f-B8BITMIME\x1f-oem\x1froot")
	f.Add("-t\x1f-i")
	f.Add("-tif\x1f<>\x1f--\x1fx")
	f.Add("-N\x1fnever\x1f-bs")
	f.Fuzz(func(t *testing.T, s string) {
		args := splitUnit(s)
		o, err := ParseArgs(args)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("non-usage error %T %v", err, err)
			}
			return
		}
		for _, v := range append([]string{o.From, o.FullName}, o.Recipients...) {
			if containsAny(v, "\r\n\x00") {
				t.Fatalf("accepted a value with a line break: %q", v)
			}
		}
	})
}
