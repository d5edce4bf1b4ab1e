package sendmail

import (
	"net/mail"
	"strings"
)

// Mode is what the command was asked to do.
type Mode int

const (
	Deliver    Mode = iota // -bm (default): read a message and submit it
	SMTPStdio              // -bs: speak SMTP on stdin/stdout
	ListQueue              // -bp, or invoked as mailq
	FlushQueue             // -q, -qANYTHING
	NoOp                   // -bi, or invoked as newaliases: nothing to do
)

// Options is the parsed sendmail command line.
type Options struct {
	Mode              Mode
	ExtractRecipients bool   // -t
	IgnoreDots        bool   // -i, -oi
	From              string // -f/-r ADDR, brackets removed; "" is the null sender when FromSet
	FromSet           bool
	FullName          string   // -F NAME
	Notify            string   // -N: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY (upper case)
	Verbose           bool     // -v
	ConfigFile        string   // -C FILE
	Recipients        []string // operands, each possibly a comma-separated list
}

// Flags that take a value, attached (-fADDR) or as the next argument (-f ADDR).
// -o, -q and -e take only attached values and are handled separately.
const valueFlags = "BCFLNXbfhr"

// ParseArgs parses sendmail's command line (without argv[0]). Short flags may
// be clustered as with getopt ("-ti", "-tif ADDR"); a flag that takes a value
// consumes the rest of its cluster, or the next argument. Option parsing stops
// at "--" or at the first operand; all later arguments are recipients.
// Errors are *UsageError (exit 64).
func ParseArgs(args []string) (Options, error) {
	var o Options
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if c == 'o' || c == 'q' || c == 'e' {
				if err := o.attached(c, a[j+1:]); err != nil {
					return Options{}, err
				}
				break
			}
			if strings.IndexByte(valueFlags, c) >= 0 {
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return Options{}, usagef("option -%c requires an argument", c)
					}
					i++
					val = args[i]
				}
				if err := o.value(c, val); err != nil {
					return Options{}, err
				}
				break
			}
			switch c {
			case 't':
				o.ExtractRecipients = true
			case 'i':
				o.IgnoreDots = true
			case 'v':
				o.Verbose = true
			case 'U', 'n', 'm':
				// Accepted and ignored: initial submission, no aliasing, me too.
			default:
				return Options{}, usagef("unknown option -%c (in %q)", c, a)
			}
		}
	}
	for _, r := range args[i:] {
		if err := checkClean("recipient", r); err != nil {
			return Options{}, err
		}
		o.Recipients = append(o.Recipients, r)
	}
	if o.Mode != Deliver && o.Mode != NoOp && len(o.Recipients) > 0 {
		return Options{}, usagef("recipients given with a mode that takes none")
	}
	return o, nil
}

// attached handles -oX, -qX and -eX, whose value is only ever attached.
func (o *Options) attached(c byte, val string) error {
	switch c {
	case 'o':
		// -oi is the only meaningful -o option; -oem, -odi, -odb, -oQ... are
		// sendmail tuning that relayd has no use for.
		if val == "" {
			return usagef("option -o requires an option letter")
		}
		if val == "i" {
			o.IgnoreDots = true
		}
	case 'q':
		// -q flushes; -q1h, -qR..., -qI... are sendmail queue-run variants,
		// all treated as "flush now".
		o.Mode = FlushQueue
	case 'e':
		// -eX: error reporting style, ignored.
	}
	return nil
}

// value handles a flag that takes a value.
func (o *Options) value(c byte, val string) error {
	switch c {
	case 'f', 'r':
		if err := checkClean("-"+string(c), val); err != nil {
			return err
		}
		o.From, o.FromSet = parseSender(val), true
	case 'F':
		if err := checkClean("-F", val); err != nil {
			return err
		}
		o.FullName = val
	case 'N':
		n, err := parseNotify(val)
		if err != nil {
			return err
		}
		o.Notify = n
	case 'C':
		o.ConfigFile = val
	case 'b':
		switch val {
		case "m":
			o.Mode = Deliver
		case "s":
			o.Mode = SMTPStdio
		case "p":
			o.Mode = ListQueue
		case "i":
			o.Mode = NoOp
		default:
			return usagef("unsupported option -b%s", val)
		}
	case 'B', 'L', 'X', 'h':
		// -B body type, -L syslog tag, -X traffic log, -h hop count: ignored.
	}
	return nil
}

// checkClean refuses values that could inject header lines or SMTP commands.
func checkClean(what, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return usagef("%s value contains a line break or NUL, refused", what)
	}
	return nil
}

// parseSender turns a -f value into a bare address: "<>" and "" are the
// null sender, "<a@b>" and "Name <a@b>" become "a@b", anything else is kept.
func parseSender(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || v == "<>" {
		return ""
	}
	if strings.ContainsAny(v, "<>") {
		if a, err := mail.ParseAddress(v); err == nil {
			return a.Address
		}
		if l, r := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); l >= 0 && r > l {
			return strings.TrimSpace(v[l+1 : r])
		}
	}
	return v
}

// parseNotify validates a -N value (RFC 3461 section 4.1: NEVER alone, or
// any of SUCCESS, FAILURE, DELAY) and returns it upper-cased.
func parseNotify(v string) (string, error) {
	up := strings.ToUpper(strings.TrimSpace(v))
	if up == "NEVER" {
		return up, nil
	}
	seen := map[string]bool{}
	for _, p := range strings.Split(up, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case "SUCCESS", "FAILURE", "DELAY":
			if seen[p] {
				return "", usagef("-N %q: %s given twice", v, p)
			}
			seen[p] = true
		default:
			return "", usagef("-N %q: want never, or a list of success, failure, delay", v)
		}
	}
	return strings.Join(order(seen), ","), nil
}

func order(seen map[string]bool) []string {
	var out []string
	for _, k := range []string{"SUCCESS", "FAILURE", "DELAY"} {
		if seen[k] {
			out = append(out, k)
		}
	}
	return out
}
