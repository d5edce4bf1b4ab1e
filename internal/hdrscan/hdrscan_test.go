package hdrscan

import (
	"bytes"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		line       string
		afterField bool
		kind       Kind
		name       string
	}{
		{"Subject: hi\r\n", false, Field, "Subject"},
		{"Subject : hi\r\n", false, Field, "Subject"},
		{"Subject\t:hi\n", false, Field, "Subject"},
		{"X-A:\r\n", false, Field, "X-A"},
		{"x:", false, Field, "x"},
		{"Subject hi: x\r\n", false, Body, ""},
		{": no name\r\n", false, Body, ""},
		{" : no name\r\n", false, Body, ""},
		{"no colon\r\n", false, Body, ""},
		{"Sub\x7fject: x\r\n", false, Body, ""},
		{"Caf\xc3\xa9: x\r\n", false, Body, ""},
		{"\tcontinued\r\n", true, Continuation, ""},
		{" continued\n", true, Continuation, ""},
		{" continued\r\n", false, Body, ""},
		{"\r\n", true, Blank, ""},
		{"\n", false, Blank, ""},
		{"", false, Body, ""},
		{"From foo@bar Thu Dec  3\r\n", false, Body, ""},
	} {
		k, n := Classify([]byte(c.line), c.afterField)
		if k != c.kind || string(n) != c.name {
			t.Errorf("Classify(%q, %v) = %v %q, want %v %q", c.line, c.afterField, k, n, c.kind, c.name)
		}
	}
}

func TestFields(t *testing.T) {
	msg := "Subject : hi\r\nFrom: a@x.example\r\nTo: b@y.example,\r\n\tc@y.example\r\n\r\nbody\r\n"
	var names, raws []string
	end := Fields([]byte(msg), func(n, raw []byte) bool {
		names, raws = append(names, string(n)), append(raws, string(raw))
		return true
	})
	if strings.Join(names, ",") != "Subject,From,To" || raws[2] != "To: b@y.example,\r\n\tc@y.example\r\n" || msg[end:] != "body\r\n" {
		t.Errorf("names %q raws %q body %q", names, raws, msg[end:])
	}
	// The body starts without an empty line.
	if end := Fields([]byte("A: 1\nnot a header\nB: 2\n"), func(_, _ []byte) bool { return true }); end != 5 {
		t.Errorf("end = %d, want 5", end)
	}
	// Stopping early still finds the end; all header, no body.
	n := 0
	if end := Fields([]byte("A: 1\r\nB: 2\r\n"), func(_, _ []byte) bool { n++; return false }); end != 12 || n != 1 {
		t.Errorf("end %d n %d", end, n)
	}
	if !Lower([]byte("Subject"), "subject") || Lower([]byte("Subjects"), "subject") || string(Value([]byte("A : b\r\n"))) != " b\r\n" {
		t.Error("Lower/Value")
	}
}

// FuzzFields: Fields agrees with Classify run line by line (the way the
// streaming readers use it), its fields tile the header exactly, and every
// field's name is what FieldName says.
func FuzzFields(f *testing.F) {
	for _, s := range []string{"Subject : hi\nFrom: a\n\nbody", "A: 1\r\n\tx\r\n\r\n", " x\nA:b\n", "A:1\nB\n", "\n", "A :\t\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got bytes.Buffer
		end := Fields(b, func(name, raw []byte) bool {
			if n, ok := FieldName(raw); !ok || !bytes.Equal(n, name) {
				t.Fatalf("field %q: name %q, FieldName says %q %v", raw, name, n, ok)
			}
			got.Write(raw)
			return true
		})
		// line by line
		off, after := 0, false
		want := 0
		for off < len(b) {
			line := b[off:]
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line = line[:i+1]
			}
			k, _ := Classify(line, after)
			if k == Blank || k == Body {
				if k == Blank {
					off += len(line)
				}
				break
			}
			after = true
			off += len(line)
			want = off
		}
		if end != off {
			t.Fatalf("Fields end %d, line by line %d: %q", end, off, b)
		}
		if !bytes.Equal(got.Bytes(), b[:want]) {
			t.Fatalf("fields %q do not tile the header %q", got.Bytes(), b[:want])
		}
	})
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"Subject : hi\r\n": "Subject: hi\r\n", "Subject\t \t:hi\n": "Subject:hi\n", "Subject: hi\r\n": "Subject: hi\r\n",
		"not a field\r\n": "not a field\r\n",
	} {
		if got := string(Canonical([]byte(in))); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}
