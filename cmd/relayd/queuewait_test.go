package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"relayd/cleanup"
	"relayd/internal/sysexits"
	"relayd/queue"
)

// spoolWithOne commits one message for bob@example.org to a fresh spool
// with no smarthost (the daemon's built-in defaults) and returns the dir.
func spoolWithOne(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(queue.Config{Dir: dir, MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	c := cleanup.New(cleanup.Config{Hostname: "relay.example.com", Spool: cleanup.SpoolOf(q.Create)})
	sub := &cleanup.Submission{Origin: queue.FromSMTP, Helo: "app.local", RemoteIP: netip.MustParseAddr("127.0.0.1"),
		RemoteHost: "localhost", Proto: "ESMTP", LocalUID: -1}
	sub.Envelope.From = "app@example.com"
	sub.Envelope.Rcpts = []queue.Recipient{{Addr: "bob@example.org", State: queue.Pending}}
	if _, err := c.Submit(context.Background(), sub, strings.NewReader("Subject: t\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestQueueListShowsWaitingWithoutSmarthost(t *testing.T) {
	dir := spoolWithOne(t)
	var out, errb bytes.Buffer
	if code := listQueue(dir, true, true, &out, &errb, nil); code != sysexits.OK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got []listEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(got) != 1 || len(got[0].Recipients) != 1 {
		t.Fatalf("got %+v", got)
	}
	r := got[0].Recipients[0]
	if r.State != "waiting" || !strings.Contains(r.LastReply, "no smarthost configured (upstream.address)") {
		t.Errorf("recipient = %+v, want state waiting with the reason as last_reply", r)
	}
	out.Reset()
	if code := listQueue(dir, true, false, &out, &errb, nil); code != sysexits.OK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "bob@example.org [waiting]") || !strings.Contains(out.String(), "(no smarthost configured") {
		t.Errorf("text listing:\n%s", out.String())
	}
	// With a smarthost the same spool lists the recipient as pending.
	out.Reset()
	listQueue(dir, false, true, &out, &errb, nil)
	if !strings.Contains(out.String(), `"state": "pending"`) || strings.Contains(out.String(), "waiting") {
		t.Errorf("with a smarthost:\n%s", out.String())
	}
}
