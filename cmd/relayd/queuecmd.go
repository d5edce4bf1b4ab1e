package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"relayd/control"
	"relayd/internal/sysexits"
	"relayd/queue"
)

// runQueue implements "relayd queue ..." and "mailq". Listing and showing
// read the spool directly (they work while the daemon is down); commands
// that change the queue go through the daemon's control socket.
func runQueue(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("queue", stderr)
	cfgFlag := fs.String("config", "", "config `FILE`")
	asJSON := fs.Bool("json", false, "JSON output (list)")
	all := fs.Bool("all", false, "every message (delete, resign)")
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: relayd queue list [--json] | show ID | flush [ID...] | delete ID...|--all | hold ID... | release ID... | bounce ID... | resign ID...|--all")
		return sysexits.Usage
	}
	cmd := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return sysexits.Usage
	}
	cfg, ok := loadClientConfig(configPath(*cfgFlag), stderr)
	if !ok {
		return sysexits.Config
	}
	ids := fs.Args()
	switch cmd {
	case "list":
		return listQueue(cfg.StateDir, cfg.Upstream.Address == "", *asJSON, stdout, stderr, routeOf(cfg))
	case "show":
		if len(ids) != 1 {
			fmt.Fprintln(stderr, "usage: relayd queue show ID")
			return sysexits.Usage
		}
		return showMessage(cfg.StateDir, ids[0], stdout, stderr)
	case "flush", "delete", "hold", "release", "bounce", "resign":
		if cmd != "flush" && len(ids) == 0 && !((cmd == "delete" || cmd == "resign") && *all) {
			fmt.Fprintf(stderr, "usage: relayd queue %s ID...\n", cmd)
			return sysexits.Usage
		}
		return callDaemon(cfg.StateDir, control.Request{Cmd: cmd, IDs: ids, All: *all}, stdout, stderr)
	}
	fmt.Fprintf(stderr, "relayd queue: unknown command %q\n", cmd)
	return sysexits.Usage
}

func callDaemon(stateDir string, req control.Request, stdout, stderr io.Writer) int {
	resp, err := control.Call(stateDir, req)
	if err != nil {
		if errors.Is(err, control.ErrNoDaemon) {
			fmt.Fprintf(stderr, "relayd %s: %v\n", req.Cmd, err)
			return sysexits.TempFail // EX_TEMPFAIL: try again once the daemon runs
		}
		if req.Cmd == "reload" {
			// The daemon answered: the new config is refused, the old one runs.
			fmt.Fprintf(stderr, "relayd reload: configuration rejected, the daemon keeps running on the previous one:\n")
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(stderr, "  %s\n", line)
			}
			return sysexits.Config
		}
		fmt.Fprintf(stderr, "relayd %s: %v\n", req.Cmd, err)
		return exitFailure
	}
	if req.Cmd != "reload" {
		fmt.Fprintf(stdout, "%s: %d message(s)\n", req.Cmd, resp.Count)
	} else {
		fmt.Fprintln(stdout, "reload: configuration reloaded")
	}
	return sysexits.OK
}

func runReload(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("reload", stderr)
	cfgFlag := fs.String("config", "", "config `FILE`")
	if err := fs.Parse(args); err != nil {
		return sysexits.Usage
	}
	cfg, ok := loadClientConfig(configPath(*cfgFlag), stderr)
	if !ok {
		return sysexits.Config
	}
	return callDaemon(cfg.StateDir, control.Request{Cmd: "reload"}, stdout, stderr)
}

// listEntry is the stable JSON form of one queued message (documented in
// README.md).
type listEntry struct {
	ID         string     `json:"id"`
	Size       int64      `json:"size"`
	Arrival    time.Time  `json:"arrival"`
	Sender     string     `json:"sender"`
	Held       bool       `json:"held"`
	Attempts   int        `json:"attempts"`
	NextTry    time.Time  `json:"next_attempt,omitzero"`
	Recipients []listRcpt `json:"recipients"`
}

type listRcpt struct {
	Address   string `json:"address"`
	State     string `json:"state"`
	LastReply string `json:"last_reply,omitempty"`
	// Smarthost is the route a pending recipient takes now (the config's
	// [[route]]s; "default" is [upstream]).
	Smarthost string `json:"smarthost,omitempty"`
}

// listQueue prints the spool's messages; noSmarthost shows their pending
// recipients as waiting for one (see markWaiting).
func listQueue(stateDir string, noSmarthost, asJSON bool, stdout, stderr io.Writer, route func(m *queue.Meta, rcpt string) string) int {
	var entries []listEntry
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	n := 0
	err := queue.ReadOnlyList(stateDir, func(m *queue.Meta) error {
		e := listEntry{ID: m.ID, Size: m.Size, Arrival: m.Arrival, Sender: m.From, Held: m.Held,
			Attempts: m.Attempts, NextTry: m.NextAttempt}
		for _, r := range m.Rcpts {
			lr := listRcpt{Address: r.Addr, State: string(r.State), LastReply: r.LastReply}
			if r.State == queue.Pending && route != nil {
				lr.Smarthost = route(m, r.Addr)
			}
			e.Recipients = append(e.Recipients, lr)
		}
		if noSmarthost {
			markWaiting(&e)
		}
		n++
		if asJSON {
			entries = append(entries, e)
			return nil
		}
		printEntry(w, e)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // no spool yet: the daemon never ran, the queue is empty
	}
	if err != nil {
		fmt.Fprintf(stderr, "relayd queue list: %v\n", err)
		if os.IsPermission(err) {
			return exitFailure
		}
		return sysexits.TempFail
	}
	if asJSON {
		if entries == nil {
			entries = []listEntry{}
		}
		enc.SetIndent("", "  ")
		enc.Encode(entries)
		return sysexits.OK
	}
	if n == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
	} else {
		fmt.Fprintf(w, "-- %d message(s)\n", n)
	}
	return sysexits.OK
}

// printEntry writes one message the way Postfix's mailq does.
func printEntry(w io.Writer, e listEntry) {
	mark := ""
	if e.Held {
		mark = "!"
	}
	sender := e.Sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	fmt.Fprintf(w, "%-20s %8d %s  %s\n", e.ID+mark, e.Size, e.Arrival.Local().Format("Mon Jan _2 15:04:05"), sender)
	for _, r := range e.Recipients {
		if r.State == string(queue.Sent) {
			continue
		}
		if r.LastReply != "" {
			fmt.Fprintf(w, "%44s(%s)\n", "", r.LastReply)
		}
		fmt.Fprintf(w, "%44s%s [%s]\n", "", r.Address, r.State)
	}
	fmt.Fprintln(w)
}

func showMessage(stateDir, id string, stdout, stderr io.Writer) int {
	var found *queue.Meta
	queue.ReadOnlyList(stateDir, func(m *queue.Meta) error {
		if m.ID == id {
			found = m
		}
		return nil
	})
	if found == nil {
		fmt.Fprintf(stderr, "relayd queue show: %s: no such message\n", id)
		return exitFailure
	}
	f, _, err := queue.OpenSpoolFile(filepath.Join(stateDir, "msg", id))
	if err != nil {
		fmt.Fprintf(stderr, "relayd queue show: %v\n", err)
		return exitFailure
	}
	defer f.Close()
	// The running daemon recycles a delivered message's file for a new
	// one: the file must hold this message before and after the read (a
	// file of the older layout has no trailer: it must still have none).
	fileID := func() string {
		got, err := queue.FileID(f)
		if err != nil {
			return "(no trailer)"
		}
		return got
	}
	before := fileID()
	gone := func() bool { now := fileID(); return now != before || now != id && now != "(no trailer)" }
	if gone() {
		fmt.Fprintf(stderr, "relayd queue show: %s: no such message (it left the queue)\n", id)
		return exitFailure
	}
	// The file is the body, then the message's meta (a trailer): stop at
	// the body's end even when the body has no blank line.
	var hdr strings.Builder
	br := bufio.NewReader(io.LimitReader(f, found.Size-int64(len(found.Prefix))))
	for {
		line, err := br.ReadString('\n')
		hdr.WriteString(line)
		if err != nil || strings.TrimRight(line, "\r\n") == "" {
			break
		}
	}
	if gone() {
		fmt.Fprintf(stderr, "relayd queue show: %s: no such message (it left the queue)\n", id)
		return exitFailure
	}
	meta := *found
	meta.Prefix = nil
	b, _ := json.MarshalIndent(meta, "", "  ")
	fmt.Fprintf(stdout, "%s\n\n", b)
	stdout.Write(found.Prefix)
	io.WriteString(stdout, hdr.String())
	return sysexits.OK
}

// controlHandler executes control requests in the daemon.
type controlHandler struct{ d *daemon }

func (h controlHandler) Handle(ctx context.Context, req control.Request) (int, error) {
	q := h.d.q
	ids := req.IDs
	if len(ids) == 0 && (req.All || req.Cmd == "flush") {
		q.List(func(m *queue.Meta) error { ids = append(ids, m.ID); return nil })
	}
	var err error
	switch req.Cmd {
	case "flush":
		err = q.Flush(ids...)
	case "delete":
		err = q.Delete(ids...)
	case "hold":
		err = q.Hold(ids...)
	case "release":
		err = q.Release(ids...)
	case "bounce":
		err = q.Bounce(ids...)
	case "resign":
		return h.d.resign(ids)
	case "reload":
		return 0, h.d.reload()
	default:
		return 0, fmt.Errorf("unknown command %q", req.Cmd)
	}
	return len(ids), err
}
