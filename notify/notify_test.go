package notify

import (
	"testing"

	"relayd/cleanup"
	"relayd/dsn"
	"relayd/envelope"
	"relayd/internal/reply"
)

// A failure for mail whose sender was rewritten from a local one goes to
// rewrite.admin, not to the no-reply rewrite.sender (issue 18).
func TestNoticeForLocalSenderGoesToAdmin(t *testing.T) {
	n := &Notifier{Intake: cleanup.New(cleanup.Config{Hostname: "relay.example.com",
		Admin: "admin@example.com", Sender: "noreply@example.com"})}
	for _, c := range []struct {
		no     envelope.Notice
		to     string
		origin envelope.Origin
	}{
		{envelope.Notice{From: "noreply@example.com", LocalSender: true}, "admin@example.com", envelope.FromAdminNotice},
		{envelope.Notice{From: "app@example.org"}, "app@example.org", envelope.FromNotice},
		{envelope.Notice{From: "root"}, "admin@example.com", envelope.FromAdminNotice},
	} {
		if to, origin := n.recipient(c.no); to != c.to || origin != c.origin {
			t.Errorf("recipient(%+v) = %q, %q; want %q, %q", c.no, to, origin, c.to, c.origin)
		}
	}
}

// The composer's input carries the queue's request: the kinds map one to
// one, and a recipient's reply is its stored fields (or, for an older
// entry, its one-line reply parsed).
func TestDSNNotice(t *testing.T) {
	for k, want := range map[envelope.NoticeKind]dsn.Kind{
		envelope.NoticeFailed: dsn.Failed, envelope.NoticeDelayed: dsn.Delayed, envelope.NoticeRelayed: dsn.Relayed,
	} {
		no := envelope.Notice{Kind: k, ID: "Q1", Rcpts: []envelope.Recipient{
			{Addr: "a@example.org", ORcpt: "rfc822;a@example.org", LastReply: "550 5.1.1 no such user"},
			{Addr: "b@example.org", Reply: reply.Reply{Code: 451, Enhanced: "4.3.0", Text: "later"}},
		}}
		d := dsnNotice(no)
		if d.Kind != want || d.ID != "Q1" || len(d.Rcpts) != 2 ||
			d.Rcpts[0].ORcpt != "rfc822;a@example.org" || d.Rcpts[0].Reply.Code != 550 || d.Rcpts[1].Reply.Enhanced != "4.3.0" {
			t.Errorf("%s: %+v", k, d)
		}
	}
}
