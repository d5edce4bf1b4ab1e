package cleanup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/envelope"
	"relayd/internal/reply"
	"relayd/maillog"
)

// Spool is where accepted messages go (*queue.Queue, through SpoolOf).
type Spool interface {
	Create() (Draft, error)
}

// Signer DKIM-signs messages (implemented by *signer.Signer).
type Signer interface {
	// Sign starts signing a message whose header From is in domain. It
	// returns a nil writer when no key covers domain. The whole message is
	// written to w; finish returns the DKIM-Signature fields to prepend.
	// If w is an io.Closer, it is closed when the submission ends, also
	// when finish is never reached (the signer releases its goroutines).
	Sign(domain string) (w io.Writer, finish func() ([]byte, error), err error)
}

// Config is what Cleanup needs to know.
type Config struct {
	Hostname        string
	Spool           Spool
	Signer          Signer // nil: no DKIM
	MaxMessageBytes int64  // 0: no limit beyond the listener's
	MaxHeaderBytes  int    // default 960 KiB (the signer's 1 MiB less room for the prefix)
	MaxReceived     int    // default 50
	Admin           string // rewrite.admin
	Sender          string // rewrite.sender
	// LocalDomains are the host's own names beyond Hostname and localhost
	// (Host.LocalDomains): addresses there get the local rules.
	LocalDomains []string
	// SevenBitOnly reports that the smarthost an entry's recipients take
	// (asked as Route is: the original envelope sender and header From
	// domain) is known not to offer 8BITMIME: 8-bit parts are then
	// downgraded to quoted-printable at intake, before signing (RFC 6152
	// §3). nil: never.
	SevenBitOnly func(from, fromDomain string, rcpts []string) bool
	// Route names the smarthost the routes give a recipient, asked with
	// the envelope sender, the header From domain and the recipient, as
	// the queue asks its Routes. A message whose recipients get several
	// is split into one queue entry per smarthost (split). nil: never.
	Route func(from, fromDomain, rcpt string) string
	// Identity returns the address the smarthost a queue entry takes may
	// send as ([[smarthost]] from), "" for none (identity.go). It is asked
	// with the envelope sender, the header From domain and the entry's
	// recipients (with Route set, all of one smarthost). nil: never.
	Identity func(from, fromDomain string, rcpts []string) string
	Clock    func() time.Time
	Logger   *slog.Logger

	local localSet // built by Update from Hostname and LocalDomains
}

// Cleanup is the intake stage. It is safe for concurrent use; Update
// swaps its configuration for messages that start afterwards.
type Cleanup struct{ cfg atomic.Pointer[Config] }

// New returns a Cleanup with defaults filled in.
func New(cfg Config) *Cleanup {
	c := &Cleanup{}
	c.Update(cfg)
	return c
}

// Update replaces the configuration (live reload).
func (c *Cleanup) Update(cfg Config) {
	if cfg.MaxHeaderBytes <= 0 {
		// The signer buffers our prefix plus the header and allows 1 MiB
		// (signer.MaxHeaderBytes): leave it room, so a header we accept
		// can always be signed (else it would get 451 forever).
		cfg.MaxHeaderBytes = 1<<20 - 64<<10
	}
	if cfg.MaxReceived <= 0 {
		cfg.MaxReceived = 50
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 1 << 62
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.local = newLocalSet(cfg.Hostname, cfg.LocalDomains)
	c.cfg.Store(&cfg)
}

// Submit reads one message from r, completes it and commits it to the
// spool. It returns the queue ID once the message is durable. Every error
// is an *smtp.SMTPError. r is not necessarily consumed on error.
func (c *Cleanup) Submit(ctx context.Context, sub *Submission, r io.Reader) (string, error) {
	return c.cfg.Load().Submit(ctx, sub, r)
}

// Admin returns the current rewrite.admin ("" when unset).
func (c *Cleanup) Admin() string { return c.cfg.Load().Admin }

// Recipient maps an envelope recipient; see Config.mapRecipient.
func (c *Cleanup) Recipient(addr string) (string, *smtp.SMTPError) {
	return c.cfg.Load().mapRecipient(addr)
}

// Sender maps an envelope sender; see Config.mapSender.
func (c *Cleanup) Sender(addr string) (string, *smtp.SMTPError) {
	return c.cfg.Load().mapSender(addr)
}

// Submission is one message's envelope and where it came from.
type Submission struct {
	Envelope envelope.Envelope // addresses already mapped by Sender/Recipient
	Origin   envelope.Origin

	// Trace information for the Received field (RFC 5321 §4.4).
	Helo       string     // what the client said in EHLO/HELO
	RemoteIP   netip.Addr // zero for local submissions
	RemoteHost string     // verified reverse DNS name, "" if unknown
	Proto      string     // "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA", "SMTP"
	AuthUser   string
	LocalUID   int // submitting uid for local submissions, -1 if unknown
	// FromAllowed, when set, must accept the header From address (an
	// authenticated user may only send as its own addresses).
	FromAllowed func(addr string) bool
}

// Submit is Cleanup.Submit with this configuration.
func (c *Config) Submit(ctx context.Context, sub *Submission, r io.Reader) (string, error) {
	id, err := c.submit(ctx, sub, r)
	if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			se = storageError(err)
		}
		maillog.Log(c.Logger, maillog.Event{
			ID: id, From: sub.Envelope.From, To: rcptList(sub.Envelope.Rcpts),
			Status: maillog.Rejected, DSN: reply.Enhanced(se), Reply: se.Message,
			Extra: []slog.Attr{slog.String("cause", err.Error())},
		})
		return "", se
	}
	return id, nil
}

func (c *Config) submit(ctx context.Context, sub *Submission, r io.Reader) (id string, err error) {
	br := getReader(r)
	defer putReader(br)
	h, err := readHeader(br, c.MaxHeaderBytes)
	if err != nil {
		return "", errorOf(err)
	}
	if h.count("received") > c.MaxReceived {
		return "", ErrLoop
	}
	if sub.FromAllowed != nil && !fromAllowed(h, sub.FromAllowed) {
		return "", ErrFromDenied
	}

	now := c.Clock()
	c.rewriteFrom(h, sub.Envelope.From)
	c.qualifyHeader(h)
	fromDomain := signingDomain(h, sub.Envelope.From) // the routes' from_domain
	groups := c.split(sub.Envelope, fromDomain)
	var base *header // before the first entry's identity rewrite, for the others
	if len(groups) > 1 {
		base = h.clone()
	}

	var entries []*entry
	defer func() {
		for _, e := range entries {
			e.abort() // no-op for what was committed
		}
	}()
	// The first entry is written while the message is read; every other
	// one is copied from its draft: its own header, then the same body.
	var msgID string // one Message-ID, when completed, for every entry
	var bodyAt int64
	first, err := c.entry(sub, h, groups[0], fromDomain, now, &msgID, func(w io.Writer, h *header) error {
		if base != nil {
			bodyAt = int64(len(headerBlock(h)))
		}
		return writeMessage(w, h, br, c.MaxMessageBytes)
	})
	if first != nil {
		entries = append(entries, first)
		id = first.id
	}
	if err != nil {
		return id, err
	}
	if base != nil {
		src, size, err := first.source().Contents()
		if err != nil {
			return id, storageError(err)
		}
		for _, g := range groups[1:] {
			e, err := c.entry(sub, base.clone(), g, fromDomain, now, &msgID, func(w io.Writer, h *header) error {
				w = errWriter{w}
				if _, err := w.Write(headerBlock(h)); err != nil {
					return err
				}
				_, err := io.Copy(w, io.NewSectionReader(src, bodyAt, size-bodyAt))
				return err
			})
			if e != nil {
				entries = append(entries, e)
			}
			if err != nil {
				return id, err
			}
		}
	}
	return c.commit(ctx, sub.Origin, entries)
}

// split groups the recipients by the smarthost the routes give them, in
// envelope order (the groups in the order of their first recipient): one
// queue entry per group, so that one smarthost's failure, backoff or rate
// limit never delays or bounces another's recipients, and each entry can
// carry its own smarthost's identity. Without Route, or with one
// recipient (every notice: it cannot split, nor loop), there is one group.
func (c *Config) split(env envelope.Envelope, fromDomain string) [][]envelope.Recipient {
	if c.Route == nil || len(env.Rcpts) < 2 {
		return [][]envelope.Recipient{env.Rcpts}
	}
	from := env.From
	if env.RouteSender != "" {
		from = env.RouteSender
	}
	var groups [][]envelope.Recipient
	index := map[string]int{}
	for _, r := range env.Rcpts {
		name := c.Route(from, fromDomain, r.Addr)
		i, ok := index[name]
		if !ok {
			i = len(groups)
			index[name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

// entry is one queue entry being written, not yet committed.
type entry struct {
	id     string
	draft  Draft // what is committed
	src    Draft // the draft as first written, when re-encoding replaced it
	env    envelope.Envelope
	prefix []byte
}

// source is the draft the message was first written to: later entries
// copy their body from it (a re-encoded one is re-encoded again, with its
// own header, rather than copied from the re-encoding).
func (e *entry) source() Draft {
	if e.src != nil {
		return e.src
	}
	return e.draft
}

func (e *entry) abort() {
	e.draft.Abort()
	if e.src != nil {
		e.src.Abort()
	}
}

// entry writes the queue entry for the recipients rcpts: h is its own copy
// of the header, which gets the identity of their smarthost; fill writes
// the message (header block and body) into the entry. It returns the entry
// also with an error (for its ID), to be aborted by the caller; msgID is
// the Message-ID shared by the entries of one message.
func (c *Config) entry(sub *Submission, h *header, rcpts []envelope.Recipient, fromDomain string, now time.Time, msgID *string, fill func(io.Writer, *header) error) (*entry, error) {
	draft, err := c.Spool.Create()
	if err != nil {
		return nil, storageError(err)
	}
	e := &entry{id: draft.ID(), draft: draft}
	env := sub.Envelope
	env.Rcpts = rcpts
	env.FromDomain = fromDomain
	if c.Identity != nil {
		if from := c.Identity(env.From, env.FromDomain, rcptAddrs(env.Rcpts)); from != "" && applyIdentity(h, &env, from) {
			c.Logger.Info("identity rewritten for the smarthost", "id", e.id, "from", from, "original_sender", env.RouteSender)
		}
	}
	// The copy carries the identity's envelope sender into the prefix and
	// the re-encoding below.
	sub2 := *sub
	sub2.Envelope = env
	sub = &sub2
	first := *msgID == ""
	if first {
		*msgID = c.messageID(e.id)
	}
	prefix := c.prefix(sub, h, e.id, *msgID, now)
	domain := signingDomain(h, sub.Envelope.From)
	out, err := c.startOutput(draft, domain, prefix, e.id)
	defer out.close()
	if err != nil {
		return e, err
	}
	if err := fill(out.sink, h); err != nil {
		return e, err
	}
	routeFrom := env.From
	if env.RouteSender != "" {
		routeFrom = env.RouteSender
	}
	sevenBit := out.watch.seen && c.SevenBitOnly != nil && c.SevenBitOnly(routeFrom, env.FromDomain, rcptAddrs(env.Rcpts))
	if out.watch.long || sevenBit {
		// A line over 998 octets, or 8-bit content for a smarthost known
		// not to take it: the message is re-encoded from the draft into a
		// second one, which replaces it (issue 16).
		keep := *msgID
		if first {
			*msgID = "" // the re-encoded draft's ID names it, as before
		}
		d2, p2, o2, err := c.reencode(sub, h, draft, domain, msgID, now, out.watch.long, sevenBit)
		if d2 == nil {
			*msgID = keep
		}
		if o2 != nil {
			defer o2.close()
		}
		if d2 != nil {
			// Kept until every entry is written: the others copy from it.
			e.src, e.draft, e.id = draft, d2, d2.ID()
			prefix, out = p2, o2
		}
		if err != nil {
			return e, err
		}
	}
	if out.finish != nil {
		sig, err := out.finish()
		if err != nil {
			return e, fmt.Errorf("%w: %w", ErrSign, err)
		}
		prefix = append(sig, prefix...)
	}
	bodyType(&env, h, out.watch.seen)
	// A sender that is rewrite.sender stands in for a local one (or is the
	// no-reply address itself): its notices go to rewrite.admin (issue 18).
	env.LocalSender = env.LocalSender || (c.Sender != "" && strings.EqualFold(env.From, c.Sender))
	e.env, e.prefix = env, prefix
	return e, nil
}

// commit commits every entry of one message, at once (they share the
// committer's flush), and returns their IDs, space-separated ("250 2.0.0
// Ok: queued as ID1 ID2"). The client gets 250 only once every entry is
// durable. If one fails, the error (4xx) is returned: the entries not
// committed are aborted, and those already committed stay queued, so the
// client's retry makes them duplicates, never a loss.
func (c *Config) commit(ctx context.Context, origin envelope.Origin, entries []*entry) (string, error) {
	errs := make([]error, len(entries))
	if len(entries) == 1 {
		errs[0] = entries[0].draft.Commit(ctx, entries[0].env, entries[0].prefix, origin)
	} else {
		var wg sync.WaitGroup
		for i, e := range entries {
			wg.Go(func() { errs[i] = e.draft.Commit(ctx, e.env, e.prefix, origin) })
		}
		wg.Wait()
	}
	ids := make([]string, len(entries))
	var failed error
	failedID := ""
	var committed []string
	for i, e := range entries {
		ids[i] = e.id
		if errs[i] != nil {
			if failed == nil {
				failed, failedID = errs[i], e.id
			}
			continue
		}
		committed = append(committed, e.id)
	}
	if failed == nil {
		return strings.Join(ids, " "), nil
	}
	if len(committed) > 0 {
		c.Logger.Warn("a split message was refused with a temporary error after some of its entries were queued: the client's retry will send those twice",
			"id", failedID, "queued", strings.Join(committed, ","), "err", failed)
	}
	return failedID, storageError(failed)
}

// fromAllowed checks every address of every From field against allowed:
// an authenticated user may not hide another author behind its own first
// address, nor add a second From field (RFC 5322 §3.6 allows one). A From
// that cannot be parsed is refused too.
func fromAllowed(h *header, allowed func(string) bool) bool {
	n := 0
	for i := range h.fields {
		f := &h.fields[i]
		if f.name != "from" {
			continue
		}
		if n++; n > 1 {
			return false
		}
		list, err := mail.ParseAddressList(f.value())
		if err != nil || len(list) == 0 {
			return false
		}
		for _, a := range list {
			if !allowed(a.Address) {
				return false
			}
		}
	}
	return true
}

// writeMessage writes the header block (minus Bcc and Return-Path), the
// separator and the normalised body. A failure to write (the spool, the
// signer) comes back as a writeError; anything else is the client's side.
func writeMessage(w io.Writer, h *header, br *bufio.Reader, limit int64) error {
	w = errWriter{w}
	buf := bytes.NewBuffer(headerBlock(h))
	buf.Write(h.firstBody)
	n := int64(buf.Len())
	if n > limit {
		return ErrTooBig
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	_, err := copyBody(w, br, limit-n)
	var se *smtp.SMTPError
	var we writeError
	switch {
	case err == nil, errors.As(err, &se), errors.As(err, &we):
		return err
	}
	return errorOf(err) // reading from the client failed (timeout, size limit, hang-up)
}

// headerBlock is the header as written: its fields minus Bcc and
// Return-Path, then the empty line.
func headerBlock(h *header) []byte {
	var buf bytes.Buffer
	for _, f := range h.fields {
		switch f.name {
		case "bcc", "return-path":
			continue // RFC 6409 §8.1; RFC 5321 §4.4: only final delivery adds Return-Path
		}
		buf.Write(f.raw)
	}
	buf.WriteString("\r\n")
	return buf.Bytes()
}

// writeError marks a failure to write the message out, as opposed to a
// failure to read it from the client.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

type errWriter struct{ w io.Writer }

func (e errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		err = writeError{err}
	}
	return n, err
}

// prefix is what relayd adds before the message for queue ID id: its
// Received field, then the completions (msgID is the Message-ID to add
// when the message has none).
func (c *Config) prefix(sub *Submission, h *header, id, msgID string, now time.Time) []byte {
	return append(c.received(sub, id, now), c.completions(h, msgID, sub.Envelope.From, now)...)
}

// messageID is a new Message-ID naming the queue ID id.
func (c *Config) messageID(id string) string {
	return fmt.Sprintf("<%s.%s@%s>", id, randomHex(8), c.Hostname)
}

// completions returns the fields a submission agent adds when missing
// (RFC 6409 §8.1-8.3, RFC 5322 §3.6). The entries a message is split
// into (split) share one Date and one Message-ID.
func (c *Config) completions(h *header, msgID, sender string, now time.Time) []byte {
	var b bytes.Buffer
	if h.get("date") == nil {
		fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if h.get("message-id") == nil {
		fmt.Fprintf(&b, "Message-ID: %s\r\n", msgID)
	}
	if h.get("from") == nil {
		from := sender
		if from == "" {
			from = "MAILER-DAEMON@" + c.Hostname
		}
		fmt.Fprintf(&b, "From: <%s>\r\n", from)
	}
	return b.Bytes()
}

// rewriteFrom replaces a local From address (root, user@this-host) by
// rewrite.sender, keeping the display name, so the smarthost accepts it and
// DMARC aligns. Other From fields stay byte for byte.
func (c *Config) rewriteFrom(h *header, sender string) {
	if c.Sender == "" {
		return
	}
	f := h.get("from")
	if f == nil {
		return
	}
	display, addr := addressOf(f.value())
	if !c.isLocal(addr) {
		return
	}
	v := "<" + c.Sender + ">"
	if display != "" {
		v = strconv.Quote(display) + " " + v
	}
	f.raw = []byte("From: " + v + "\r\n")
}

// received builds the trace field (RFC 5321 §4.4). The "for" clause names
// the recipient only when there is exactly one, as other MTAs do.
func (c *Config) received(sub *Submission, id string, now time.Time) []byte {
	var b strings.Builder
	b.WriteString("Received: ")
	if sub.RemoteIP.IsValid() {
		host := sub.RemoteHost
		if host == "" {
			host = "unknown"
		}
		fmt.Fprintf(&b, "from %s (%s [%s])\r\n\tby %s (relayd) with %s",
			clean(sub.Helo), clean(host), sub.RemoteIP.Unmap(), c.Hostname, sub.Proto)
		if sub.AuthUser != "" {
			// The authenticated user as a comment after the protocol
			// (RFC 5321 §4.4 allows CFWS before "id"; RFC 3848 names
			// ESMTPSA).
			fmt.Fprintf(&b, " (authenticated as %s)", clean(sub.AuthUser))
		}
		fmt.Fprintf(&b, " id %s", id)
	} else {
		comment := "relayd"
		if sub.LocalUID >= 0 {
			comment = fmt.Sprintf("relayd, from local uid %d", sub.LocalUID)
		}
		fmt.Fprintf(&b, "by %s (%s)\r\n\tid %s", c.Hostname, comment, id)
	}
	if len(sub.Envelope.Rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sub.Envelope.Rcpts[0].Addr)
	}
	fmt.Fprintf(&b, "; %s\r\n", now.Format(time.RFC1123Z))
	return []byte(b.String())
}

// clean makes a client-supplied name safe for a header comment.
func clean(s string) string {
	if s == "" {
		return "unknown"
	}
	b := []byte(s)
	for i, ch := range b {
		if ch <= ' ' || ch >= 0x7f || ch == '(' || ch == ')' || ch == '\\' || ch == ';' {
			b[i] = '?'
		}
	}
	if len(b) > 255 {
		b = b[:255]
	}
	return string(b)
}

// signingDomain is the domain DMARC checks: the header From's (RFC 7489
// §3.1), or the envelope sender's when relayd added the From itself.
func signingDomain(h *header, sender string) string {
	if f := h.get("from"); f != nil {
		_, addr := addressOf(f.value())
		return Domain(addr)
	}
	return Domain(sender)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func rcptAddrs(rs []envelope.Recipient) []string {
	addrs := make([]string, len(rs))
	for i, r := range rs {
		addrs[i] = r.Addr
	}
	return addrs
}

func rcptList(rs []envelope.Recipient) string {
	addrs := make([]string, len(rs))
	for i, r := range rs {
		addrs[i] = r.Addr
	}
	return strings.Join(addrs, ",")
}
