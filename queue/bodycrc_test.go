package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// A bit flipped in a queued body is caught before the retry: the message
// is quarantined with an ERROR and counted, never delivered corrupted.
func TestBodyBitFlipQuarantined(t *testing.T) {
	inBothFlushModes(t, nil, func(t *testing.T, h *harness) {
		h.del.set(replyAll(451, smtp.EnhancedCode{4, 3, 0}, "later"))
		body := []byte("Subject: crc\r\n\r\n" + strings.Repeat("all work and no play\r\n", 100))
		id := commitBody(t, h.q, Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, []byte("Received: x\r\n"), body, FromSMTP)
		m, err := loadMessage(h.q.dir, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := formatCRC(crc32.Checksum(body, castagnoli)); m.BodyCRC != want {
			t.Fatalf("BodyCRC = %q, want %q", m.BodyCRC, want)
		}
		h.run()
		waitFor(t, "first attempt", func() bool { return h.del.count() == 1 })
		h.idle()
		f, err := os.OpenFile(h.q.bodyPath(id), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		f.ReadAt(b, 100)
		b[0] ^= 0x04
		f.WriteAt(b, 100)
		f.Close()
		h.del.set(allOK)
		h.advance(time.Hour)
		waitFor(t, "quarantine", func() bool { return h.q.Len() == 0 })
		if n := h.del.count(); n != 1 {
			t.Errorf("the corrupted message was handed to the deliverer (%d attempts)", n)
		}
		if _, err := os.Stat(filepath.Join(h.q.dir, "corrupt", id)); err != nil {
			t.Errorf("not quarantined: %v", err)
		}
		if st := h.q.Stats(); st.Quarantined != 1 {
			t.Errorf("Stats.Quarantined = %d, want 1", st.Quarantined)
		}
		if !strings.Contains(h.logs.String(), "level=ERROR") || !strings.Contains(h.logs.String(), "checksum mismatch") {
			t.Errorf("no ERROR about the checksum:\n%s", h.logs)
		}
	})
}

// A message file of the format before the body checksum (no body_crc32c
// in its meta) is read and delivered as before.
func TestBodyWithoutCRCStillDelivered(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Deliverer = nil })
	body := []byte("Subject: old\r\n\r\nold format\r\n")
	id := commitBody(t, h.q, Envelope{From: "s@x.example", Rcpts: rcpts("a@y.example")}, nil, body, FromSMTP)
	dir := h.q.dir
	h.q.Close()
	m, err := loadMessage(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	m.BodyCRC = ""
	raw, _ := json.Marshal(m)
	if bytes.Contains(raw, []byte("crc")) {
		t.Fatalf("old-format meta has a checksum: %s", raw)
	}
	if err := os.WriteFile(filepath.Join(dir, "msg", id), appendTrailer(append([]byte(nil), body...), raw), 0o600); err != nil {
		t.Fatal(err)
	}
	del := &fakeDeliverer{fn: allOK}
	h.clock.Advance(time.Hour) // past the retry time Commit persisted
	q, err := Open(Config{Dir: dir, Deliverer: del, Clock: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	h2 := &harness{t: t, q: q, clock: h.clock, del: del}
	h2.run()
	defer h2.stopRun()
	waitFor(t, "delivery", func() bool { return q.Len() == 0 })
	if del.count() != 1 {
		t.Errorf("%d deliveries, want 1", del.count())
	}
	if _, err := os.Stat(filepath.Join(dir, "corrupt", id)); err == nil {
		t.Error("an old-format message was quarantined")
	}
}

// BenchmarkBodyCRC is the checksum's cost per message body, as Draft.Write
// pays it on the commit path (and checkBody on a retry, plus the read).
func BenchmarkBodyCRC(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		buf := bytes.Repeat([]byte("x"), size)
		b.Run(byteSize(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			var c uint32
			for b.Loop() {
				c = crc32.Update(0, castagnoli, buf)
			}
			_ = c
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
