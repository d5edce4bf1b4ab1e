package conf

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads the TOML file at path over the built-in defaults and validates
// the result. path "" means no file: the built-in defaults. A non-nil error
// is always of type Errors and lists every problem found.
func Load(path string) (*Config, error) { return osEnv().load(path) }

// LoadClient is Load for the commands that talk to a running daemon or read
// the spool (relayd queue, mailq, reload, dkim dns, sendmail): they never
// need the smarthost password, which under systemd exists only inside the
// service (the credential "smarthost"), so it is neither read nor required.
// Upstream.Password stays empty.
func LoadClient(path string) (*Config, error) {
	e := osEnv()
	e.noSecrets = true
	return e.load(path)
}

// Parse decodes TOML data over the built-in defaults and validates the
// result; source names the data in errors and becomes Config.Source.
// A non-nil error is always of type Errors.
func Parse(data []byte, source string) (*Config, error) { return osEnv().parse(data, source) }

func (e env) load(path string) (*Config, error) {
	if path == "" {
		c := defaults()
		c.Hostname = e.fqdn()
		if errs := c.validate(e); len(errs) > 0 {
			errs.inFile("built-in defaults")
			return nil, errs
		}
		return c, nil
	}
	data, err := e.readFile(path)
	if err != nil {
		return nil, Errors{&Problem{File: path, Err: fmt.Errorf("cannot read config: %w", err)}}
	}
	return e.parse(data, path)
}

func (e env) parse(data []byte, source string) (*Config, error) {
	c := defaults()
	c.Source = source
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		p := &Problem{File: source, Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.Line, p.Err = pe.Position.Line, errors.New(pe.Message)
		}
		return nil, Errors{p}
	}
	d := decoder{md: &md}
	d.fields(top, "", nil, reflect.ValueOf(c).Elem())
	d.undecoded()
	if !md.IsDefined("hostname") {
		c.Hostname = e.fqdn()
	}
	errs := d.errs
	for _, err := range c.validate(e) {
		// A key that failed to decode holds its default or zero value:
		// validating it too would only repeat the problem.
		if p, ok := err.(*Problem); !ok || !d.reported(p.Key) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		errs.inFile(source)
		return nil, errs
	}
	return c, nil
}

// decoder decodes one TOML key at a time (through toml.Primitive), so that
// one bad value does not hide the problems after it, and it knows the index
// of every array-of-tables element for its messages.
type decoder struct {
	md      *toml.MetaData
	errs    Errors
	unknown []string // raw TOML keys (no indexes) already reported as unknown or mistyped
}

// reported reports whether decoding already found a problem with key or a
// key that contains it.
func (d *decoder) reported(key string) bool {
	return slices.ContainsFunc(d.errs, func(err error) bool {
		p, ok := err.(*Problem)
		return ok && (p.Key == key || strings.HasPrefix(key, p.Key+".") || strings.HasPrefix(key, p.Key+"["))
	})
}

var durationType = reflect.TypeFor[Duration]()

// fields decodes a table into the struct rv. key is the display key
// ("users[1]"), raw the TOML key path without indexes.
func (d *decoder) fields(m map[string]toml.Primitive, key string, raw []string, rv reflect.Value) {
	known := map[string]bool{}
	d.structFields(m, key, raw, rv, known)
	var unknown []string
	for k := range m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		d.errs.add(join(key, k), "unknown key")
		d.unknown = append(d.unknown, toml.Key(append(slices.Clip(raw), k)).String())
	}
}

// structFields decodes the fields of rv found in m and records their names
// in known. An embedded struct without a TOML name (Smarthost's Upstream)
// contributes its fields to the same table.
func (d *decoder) structFields(m map[string]toml.Primitive, key string, raw []string, rv reflect.Value, known map[string]bool) {
	t := rv.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			d.structFields(m, key, raw, rv.Field(i), known)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		known[name] = true
		if prim, ok := m[name]; ok {
			d.value(prim, join(key, name), append(slices.Clip(raw), name), rv.Field(i))
		}
	}
}

// defaulter is an array-of-tables element with defaults of its own.
type defaulter interface{ setDefaults() }

func (d *decoder) value(prim toml.Primitive, key string, raw []string, fv reflect.Value) {
	ft := fv.Type()
	switch {
	case ft.Kind() == reflect.Struct && ft != durationType:
		if m, ok := d.table(prim, key, raw); ok {
			d.fields(m, key, raw, fv)
		}
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
		var elems []toml.Primitive
		if err := d.md.PrimitiveDecode(prim, &elems); err != nil {
			d.typeError(key, raw, "an array of tables ([["+raw[len(raw)-1]+"]])", err)
			return
		}
		s := reflect.MakeSlice(ft, len(elems), len(elems))
		for i, e := range elems {
			ek := fmt.Sprintf("%s[%d]", key, i)
			if df, ok := s.Index(i).Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			if m, ok := d.table(e, ek, raw); ok {
				d.fields(m, ek, raw, s.Index(i))
			}
		}
		fv.Set(s)
	default:
		if err := d.md.PrimitiveDecode(prim, fv.Addr().Interface()); err != nil {
			d.typeError(key, raw, describe(ft), err)
		}
	}
}

// table decodes prim as a TOML table. (Decoding a non-table into a map is
// silently a nil map in BurntSushi/toml, so the type is checked first.)
func (d *decoder) table(prim toml.Primitive, key string, raw []string) (map[string]toml.Primitive, bool) {
	var v any
	if err := d.md.PrimitiveDecode(prim, &v); err != nil {
		d.typeError(key, raw, "a table", err)
		return nil, false
	}
	if _, ok := v.(map[string]any); !ok {
		d.errs.add(key, "must be a table, not %s", tomlType(v))
		d.unknown = append(d.unknown, toml.Key(raw).String())
		return nil, false
	}
	var m map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &m); err != nil {
		d.typeError(key, raw, "a table", err)
		return nil, false
	}
	return m, true
}

// tomlType names the TOML type of a decoded value for messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	}
	return "a date or time"
}

// typeError records a decoding failure. A toml.ParseError here carries the
// message of an UnmarshalText method (such as Duration's) or a range error,
// which is reported as is; anything else is a TOML type mismatch.
func (d *decoder) typeError(key string, raw []string, want string, err error) {
	d.unknown = append(d.unknown, toml.Key(raw).String())
	var pe toml.ParseError
	if errors.As(err, &pe) {
		d.errs = append(d.errs, &Problem{Key: key, Err: errors.New(pe.Message)})
		return
	}
	p := &Problem{Key: key, Err: fmt.Errorf("must be %s", want)}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
	}
	d.errs = append(d.errs, p)
}

// lineRE finds the line in BurntSushi/toml's type mismatch messages.
var lineRE = regexp.MustCompile(`^toml: line (\d+)`)

// undecoded reports keys the decoder never looked at that are not inside an
// unknown key already reported (a safety net: fields reports unknown keys
// with their array indexes).
func (d *decoder) undecoded() {
	for _, k := range d.md.Undecoded() {
		s := k.String()
		covered := slices.ContainsFunc(d.unknown, func(u string) bool {
			return s == u || strings.HasPrefix(s, u+".")
		})
		if !covered {
			d.errs.add(s, "unknown key")
			d.unknown = append(d.unknown, s)
		}
	}
}

func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration string such as "5m" or "5d"`
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describe(t.Elem()), "a "), "an ") + "s"
	}
	return t.String()
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}
