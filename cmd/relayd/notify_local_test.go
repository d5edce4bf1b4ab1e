package main

import (
	"testing"

	"relayd/cleanup"
	"relayd/queue"
)

// A failure for mail whose sender was rewritten from a local one goes to
// rewrite.admin, not to the no-reply rewrite.sender (issue 18).
func TestNoticeForLocalSenderGoesToAdmin(t *testing.T) {
	n := &notifier{intake: cleanup.New(cleanup.Config{Hostname: "relay.example.com",
		Admin: "admin@example.com", Sender: "noreply@example.com"})}
	for _, c := range []struct {
		no     queue.Notice
		to     string
		origin queue.Origin
	}{
		{queue.Notice{From: "noreply@example.com", LocalSender: true}, "admin@example.com", queue.FromAdminNotice},
		{queue.Notice{From: "app@example.org"}, "app@example.org", queue.FromNotice},
		{queue.Notice{From: "root"}, "admin@example.com", queue.FromAdminNotice},
	} {
		if to, origin := n.recipient(c.no); to != c.to || origin != c.origin {
			t.Errorf("recipient(%+v) = %q, %q; want %q, %q", c.no, to, origin, c.to, c.origin)
		}
	}
}
