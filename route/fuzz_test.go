package route

import (
	"fmt"
	"strings"
	"testing"

	"relayd/conf"
)

// domains is the alphabet the fuzzer builds routes and messages from:
// small, so that routes overlap and subdomains occur.
var domains = []string{"a.example", "b.example", "x.a.example", "A.Example.", "c.test", "y.x.a.example", "example"}

var smarthosts = []string{"s1", "s2", "s3", "default"}

// genConfig turns fuzz bytes into TOML text with three [[smarthost]]s and
// up to eight [[route]]s, and a message (sender, header From domain,
// recipient).
func genConfig(data []byte) (src string, from, fromDomain, rcpt string) {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	var b strings.Builder
	b.WriteString("hostname = \"relay.example.net\"\nstate_dir = \"/var/lib/relayd\"\n")
	for _, s := range smarthosts[:3] {
		fmt.Fprintf(&b, "[[smarthost]]\nname = %q\naddress = \"127.0.0.1:2525\"\ntls = \"none\"\n", s)
	}
	list := func() string {
		n := next() % 3
		var ds []string
		for range n {
			ds = append(ds, fmt.Sprintf("%q", domains[next()%len(domains)]))
		}
		return "[" + strings.Join(ds, ", ") + "]"
	}
	for range next() % 9 {
		b.WriteString("[[route]]\n")
		mask := next()
		if mask&1 != 0 {
			fmt.Fprintf(&b, "sender_domain = %s\n", list())
		}
		if mask&2 != 0 {
			fmt.Fprintf(&b, "from_domain = %s\n", list())
		}
		if mask&4 != 0 {
			fmt.Fprintf(&b, "recipient_domain = %s\n", list())
		}
		fmt.Fprintf(&b, "smarthost = %q\n", smarthosts[next()%len(smarthosts)])
	}
	addr := func() string {
		switch k := next() % (len(domains) + 2); k {
		case len(domains):
			return "" // the null sender
		case len(domains) + 1:
			return "local" // no domain
		default:
			return "u@" + domains[k]
		}
	}
	from, rcpt = addr(), addr()
	if k := next() % (len(domains) + 1); k < len(domains) {
		fromDomain = domains[k]
	}
	return b.String(), from, fromDomain, rcpt
}

// reference is a naive matcher written apart from Match: it compares
// label sequences instead of suffix strings.
func reference(routes []conf.Route, from, fromDomain, rcpt string) string {
	labels := func(d string) []string {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" {
			return nil
		}
		return strings.Split(d, ".")
	}
	under := func(d, parent string) bool {
		dl, pl := labels(d), labels(parent)
		if len(dl) == 0 || len(dl) < len(pl) {
			return false
		}
		for i := range pl {
			if dl[len(dl)-len(pl)+i] != pl[i] {
				return false
			}
		}
		return true
	}
	dom := func(a string) string {
		if _, d, ok := strings.Cut(a, "@"); ok {
			return d
		}
		return ""
	}
	ok := func(list []string, d string) bool {
		if len(list) == 0 {
			return true
		}
		for _, l := range list {
			if under(d, l) {
				return true
			}
		}
		return false
	}
	for _, r := range routes {
		if ok(r.SenderDomain, dom(from)) && ok(r.FromDomain, fromDomain) && ok(r.RecipientDomain, dom(rcpt)) {
			return r.Smarthost
		}
	}
	return "default"
}

// FuzzRoute builds routes through the config parser and checks the
// matcher built from its output: it never panics, is deterministic, names
// a configured smarthost or "default", and agrees with the reference.
// A config conf refuses must be refused for a route reason only.
func FuzzRoute(f *testing.F) {
	f.Add([]byte{1, 1, 1, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{3, 7, 1, 2, 3, 1, 4, 1, 0, 5, 4, 1, 1, 2, 1, 2, 3, 4, 5})
	f.Add([]byte{8, 4, 2, 0, 2, 1, 4, 2, 5, 3, 3, 2, 6, 1, 2, 1, 2, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		src, from, fromDomain, rcpt := genConfig(data)
		c, err := conf.Parse([]byte(src), "fuzz.toml")
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.toml: route[") || !strings.Contains(line, "can never match") && !strings.Contains(line, "has no matcher") {
					t.Fatalf("unexpected problem %q in\n%s", line, src)
				}
			}
			return
		}
		m := New(c.Routes)
		got := m.Match(from, fromDomain, rcpt)
		if again := m.Match(from, fromDomain, rcpt); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
		if _, ok := c.Smarthost(got); !ok {
			t.Fatalf("Match = %q, not a configured smarthost", got)
		}
		if want := reference(c.Routes, from, fromDomain, rcpt); got != want {
			t.Fatalf("Match(%q, %q, %q) = %q, reference %q\n%s", from, fromDomain, rcpt, got, want, src)
		}
		if len(c.Routes) == 0 && got != Default {
			t.Fatalf("no routes but Match = %q", got)
		}
	})
}

func TestMatch(t *testing.T) {
	m := New([]conf.Route{
		{SenderDomain: []string{"shop.example"}, Smarthost: "ses"},
		{FromDomain: []string{"Brand.Example."}, Smarthost: "m365"},
		{RecipientDomain: []string{"partner.example"}, Smarthost: "partner"},
		{SenderDomain: []string{"app.example"}, RecipientDomain: []string{"gov.example"}, Smarthost: "gov"},
	})
	for _, c := range []struct{ from, hdr, rcpt, want string }{
		{"a@shop.example", "", "x@else.example", "ses"},
		{"a@eu.shop.example", "", "x@else.example", "ses"},                // subdomain
		{"a@myshop.example", "", "x@else.example", "default"},             // not a subdomain
		{"a@other.example", "brand.example", "x@partner.example", "m365"}, // first match wins
		{"a@other.example", "", "x@Partner.Example", "partner"},
		{"a@app.example", "", "x@gov.example", "gov"},       // both matchers
		{"a@app.example", "", "x@other.example", "default"}, // only one of two
		{"", "", "x@else.example", "default"},               // null sender
	} {
		if got := m.Match(c.from, c.hdr, c.rcpt); got != c.want {
			t.Errorf("Match(%q, %q, %q) = %q, want %q", c.from, c.hdr, c.rcpt, got, c.want)
		}
	}
	var none *Matcher
	if got := none.Match("a@shop.example", "", "b@c.example"); got != Default {
		t.Errorf("nil Matcher = %q", got)
	}
}
