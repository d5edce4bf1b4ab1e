package queue

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// A message whose sender stands in for a local one says so in its notice
// (issue 18), and the flag survives the meta file; an older meta file
// without it reads as false.
func TestLocalSenderReachesNotice(t *testing.T) {
	h := newHarness(t, nil)
	h.del.set(replyAll(500, smtp.EnhancedCode{5, 5, 2}, "Line too long"))
	id := h.commit(Envelope{From: "noreply@x.example", Rcpts: rcpts("a@y.example"), LocalSender: true}, FromLocal)
	if !h.meta(id).LocalSender {
		t.Fatal("LocalSender not stored")
	}
	h.commit(Envelope{From: "app@x.example", Rcpts: rcpts("b@y.example")}, FromSMTP)
	h.run()
	waitFor(t, "both failed", func() bool { return len(h.notif.kinds(NoticeFailed)) == 2 })
	for _, n := range h.notif.kinds(NoticeFailed) {
		if want := n.From == "noreply@x.example"; n.LocalSender != want {
			t.Errorf("notice for %s: LocalSender = %v, want %v", n.From, n.LocalSender, want)
		}
	}
	var old Meta
	if err := json.Unmarshal([]byte(`{"version":1,"id":"x","from":"a@b.example","rcpts":[]}`), &old); err != nil || old.LocalSender {
		t.Errorf("old meta: %+v, %v", old, err)
	}
	if b, _ := json.Marshal(Meta{}); strings.Contains(string(b), "local_sender") {
		t.Errorf("false LocalSender written: %s", b)
	}
}

// A message never attempted is due at once when read back at start-up (it
// was held while no smarthost was set); one already attempted keeps its
// retry time (issue 16).
func TestFirstDue(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	if got := firstDue(&Meta{NextAttempt: later}, now); !got.Equal(now) {
		t.Errorf("never attempted: due %v, want now", got)
	}
	if got := firstDue(&Meta{Attempts: 1, NextAttempt: later}, now); !got.Equal(later) {
		t.Errorf("attempted: due %v, want %v", got, later)
	}
	if got := firstDue(&Meta{NextAttempt: now.Add(-time.Minute)}, now); !got.Equal(now.Add(-time.Minute)) {
		t.Errorf("already due: %v", got)
	}
}

// ReplacePrefix rewrites only the stored prefix, durably: after a reopen
// the message reads back with the new prefix and the same body.
func TestReplacePrefix(t *testing.T) {
	h := newHarness(t, nil)
	id := h.commit(Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, FromSMTP)
	err := h.q.ReplacePrefix(id, func(m *Meta, msg io.Reader) ([]byte, error) {
		b, _ := io.ReadAll(msg)
		if string(b) != "Received: by test\r\nSubject: x\r\n\r\nbody\r\n" {
			t.Errorf("fn saw %q", b)
		}
		return []byte("DKIM-Signature: new\r\nReceived: by test\r\n"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := h.q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	m, _ := h.q.Get(id)
	if string(b) != "DKIM-Signature: new\r\nReceived: by test\r\nSubject: x\r\n\r\nbody\r\n" || m.Size != int64(len(b)) {
		t.Errorf("after ReplacePrefix: %q (size %d)", b, m.Size)
	}
	if err := h.q.ReplacePrefix("01NOSUCHMESSAGE000", func(*Meta, io.Reader) ([]byte, error) { return nil, nil }); err == nil {
		t.Error("unknown ID accepted")
	}
}
