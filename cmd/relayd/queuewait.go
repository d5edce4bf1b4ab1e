package main

import (
	"relayd/conf"
	"relayd/queue"
)

// Waiting is the state `relayd queue list` shows for a recipient the
// daemon is not trying at all because no smarthost is configured: the
// queue keeps it pending (it is neither sent nor failed), and the daemon
// holds it until upstream.address is set (issue 17). Listing reads the
// config the daemon reads, so it knows this without asking the daemon.
const Waiting = "waiting"

// noSmarthostReply is the last_reply of a waiting recipient.
const noSmarthostReply = "no smarthost configured (upstream.address): held until one is set"

// markWaiting shows the pending recipients of e as waiting for a
// smarthost, with the reason as last_reply (an earlier reply is kept after
// it). A recipient held by `relayd queue hold` keeps Held on the message.
func markWaiting(e *listEntry) {
	for i := range e.Recipients {
		r := &e.Recipients[i]
		if r.State != string(queue.Pending) || r.Smarthost != "" && r.Smarthost != conf.DefaultRoute {
			continue // a [[smarthost]]'s recipient is not waiting for [upstream]
		}
		r.State = Waiting
		if r.LastReply == "" {
			r.LastReply = noSmarthostReply
		} else {
			r.LastReply = noSmarthostReply + "; before: " + r.LastReply
		}
	}
}
