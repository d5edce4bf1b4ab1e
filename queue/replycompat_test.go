package queue

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayd/internal/reply"
)

// TestOldLastReplyLoads: an entry written before Recipient.Reply existed
// (last_reply as a string only) loads, its replies read as fields; once
// rewritten it carries both forms, so an older relayd still reads it.
func TestOldLastReplyLoads(t *testing.T) {
	old, err := os.ReadFile("testdata/meta-v1-last-reply.json")
	if err != nil {
		t.Fatal(err)
	}
	id := newID(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	for _, sub := range []string{"msg", "meta"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "msg", id), []byte("body\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metaFile := filepath.Join(dir, "meta", id+".json")
	if err := os.WriteFile(metaFile, bytes.ReplaceAll(old, []byte("@ID@"), []byte(id)), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m, err := q.Get(id)
	if err != nil {
		t.Fatalf("old entry does not load: %v", err)
	}
	want := []reply.Reply{
		{Code: 451, Enhanced: "4.7.1", Text: "Greylisted, try again later"},
		{Code: 550, Enhanced: "5.1.1", Text: "<c@example.org>: User unknown"},
		{Text: "upstream smtp.isp.example:587: connect: connection refused"},
		{},
	}
	if len(m.Rcpts) != len(want) {
		t.Fatalf("%d recipients, want %d", len(m.Rcpts), len(want))
	}
	for i, w := range want {
		if got := m.Rcpts[i].Last(); got != w {
			t.Errorf("rcpt %d: Last() = %+v, want %+v", i, got, w)
		}
	}

	m.Rcpts[0].SetReply(reply.Reply{Code: 452, Enhanced: "4.2.2", Text: "mailbox full"})
	if err := q.writeMeta(m); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(metaFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"last_reply":"452 4.2.2 mailbox full"`, `"reply":{"code":452,"enhanced":"4.2.2","text":"mailbox full"}`,
		`"last_reply":"550 5.1.1 \u003cc@example.org\u003e: User unknown"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("rewritten entry lacks %s:\n%s", s, b)
		}
	}
	m2, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Rcpts[0].Last(); got != (reply.Reply{Code: 452, Enhanced: "4.2.2", Text: "mailbox full"}) {
		t.Errorf("after rewrite: %+v", got)
	}
}
