package sendmail

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestReadDropStrict(t *testing.T) {
	good := DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"],"uid":5}` + "\nmsg"
	env, r, err := ReadDrop(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	if env.From != "a@b" || env.UID != 5 || string(b) != "msg" {
		t.Errorf("env %+v msg %q", env, b)
	}
	bad := []string{
		"",
		"RELAYD-MAILDROP 2\n{}\n",
		DropMagic + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":[]}` + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"],"extra":1}` + "\n",
		DropMagic + "\n" + `{"from":"a@b\r\nX: y","rcpts":["c@d"]}` + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d>"]}` + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"],"notify":"NEVER,DELAY"}` + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"],"ret":"ALL"}` + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"]} {"x":1}` + "\n",
		DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"]}`, // no newline
		DropMagic + "\n" + strings.Repeat(" ", maxDropEnvelope+10) + "\n",
	}
	for _, in := range bad {
		if _, _, err := ReadDrop(strings.NewReader(in)); err == nil {
			t.Errorf("ReadDrop accepted %.80q", in)
		}
	}
}

func TestWriteDropRoundTrip(t *testing.T) {
	dir := t.TempDir()
	env := Envelope{From: "", Rcpts: []string{"root"}, Notify: "SUCCESS", EnvID: "id-1"}
	msg := "Subject: x\r\n\r\n\x00binary\xff\r\n"
	name, err := WriteDrop(dir, env, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if len(name) != 48 || strings.HasPrefix(name, ".") {
		t.Errorf("name %q", name)
	}
	got, m := readDropFile(t, dir+"/"+name)
	if got.From != "" || got.Rcpts[0] != "root" || got.Notify != "SUCCESS" || got.EnvID != "id-1" || m != msg {
		t.Errorf("env %+v msg %q", got, m)
	}
	if _, err := WriteDrop(dir, Envelope{From: "a\nb", Rcpts: []string{"x"}}, strings.NewReader("")); err == nil {
		t.Error("WriteDrop accepted an injected sender")
	}
}

func FuzzReadDrop(f *testing.F) {
	f.Add([]byte(DropMagic + "\n" + `{"from":"a@b","rcpts":["c@d"],"uid":5,"submitted":"2026-01-02T03:04:05Z"}` + "\nSubject: x\r\n\r\nb\r\n"))
	f.Add([]byte(DropMagic + "\n" + `{"from":"","rcpts":["root"],"notify":"NEVER","ret":"HDRS","envid":"x"}` + "\n"))
	f.Add([]byte(DropMagic + "\n{}\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, r, err := ReadDrop(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(env.Rcpts) == 0 {
			t.Fatal("accepted an envelope without recipients")
		}
		for _, a := range append([]string{env.From}, env.Rcpts...) {
			if strings.ContainsAny(a, "\r\n\x00<>") {
				t.Fatalf("accepted address %q", a)
			}
		}
		io.Copy(io.Discard, r)
	})
}
