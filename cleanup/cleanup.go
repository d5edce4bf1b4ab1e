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
	// SevenBitOnly reports that the smarthost is known not to offer
	// 8BITMIME: 8-bit parts are then downgraded to quoted-printable at
	// intake, before signing (RFC 6152 §3). nil: never.
	SevenBitOnly func() bool
	// Identity returns the address the smarthost a message takes may
	// send as ([[smarthost]] from), "" for none (identity.go). It is asked
	// with the envelope sender, the header From domain and the
	// recipients, as the routes match them. nil: never.
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

	draft, err := c.Spool.Create()
	if err != nil {
		return "", storageError(err)
	}
	committed := false
	defer func() {
		if !committed {
			draft.Abort()
		}
	}()
	id = draft.ID()

	now := c.Clock()
	c.rewriteFrom(h, sub.Envelope.From)
	c.qualifyHeader(h)
	env := sub.Envelope
	env.FromDomain = signingDomain(h, env.From) // the routes' from_domain
	if c.Identity != nil {
		if from := c.Identity(env.From, env.FromDomain, rcptAddrs(env.Rcpts)); from != "" && applyIdentity(h, &env, from) {
			c.Logger.Info("identity rewritten for the smarthost", "id", id, "from", from, "original_sender", env.RouteSender)
		}
	}
	// The copy carries the identity's envelope sender into the prefix and
	// the re-encoding below.
	sub2 := *sub
	sub2.Envelope = env
	sub = &sub2
	prefix := c.prefix(sub, h, id, now)
	domain := signingDomain(h, sub.Envelope.From)
	out, err := c.startOutput(draft, domain, prefix, id)
	defer out.close()
	if err != nil {
		return id, err
	}
	if err := writeMessage(out.sink, h, br, c.MaxMessageBytes); err != nil {
		return id, err
	}
	sevenBit := out.watch.seen && c.SevenBitOnly != nil && c.SevenBitOnly()
	if out.watch.long || sevenBit {
		// A line over 998 octets, or 8-bit content for a smarthost known
		// not to take it: the message is re-encoded from the draft into a
		// second one, which replaces it (issue 16).
		d2, p2, o2, err := c.reencode(sub, h, draft, domain, now, out.watch.long, sevenBit)
		if o2 != nil {
			defer o2.close()
		}
		if d2 != nil {
			defer d2.Abort() // a no-op once committed
		}
		if err != nil {
			return id, err
		}
		if d2 != nil {
			draft.Abort()
			draft, id, prefix, out = d2, d2.ID(), p2, o2
		}
	}
	if out.finish != nil {
		sig, err := out.finish()
		if err != nil {
			return id, fmt.Errorf("%w: %w", ErrSign, err)
		}
		prefix = append(sig, prefix...)
	}
	bodyType(&env, h, out.watch.seen)
	// A sender that is rewrite.sender stands in for a local one (or is the
	// no-reply address itself): its notices go to rewrite.admin (issue 18).
	env.LocalSender = env.LocalSender || (c.Sender != "" && strings.EqualFold(env.From, c.Sender))
	if err := draft.Commit(ctx, env, prefix, sub.Origin); err != nil {
		return id, storageError(err)
	}
	committed = true
	return id, nil
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
	var buf bytes.Buffer
	for _, f := range h.fields {
		switch f.name {
		case "bcc", "return-path":
			continue // RFC 6409 §8.1; RFC 5321 §4.4: only final delivery adds Return-Path
		}
		buf.Write(f.raw)
	}
	buf.WriteString("\r\n")
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
// Received field, then the completions.
func (c *Config) prefix(sub *Submission, h *header, id string, now time.Time) []byte {
	return append(c.received(sub, id, now), c.completions(h, id, sub.Envelope.From, now)...)
}

// completions returns the fields a submission agent adds when missing
// (RFC 6409 §8.1-8.3, RFC 5322 §3.6).
func (c *Config) completions(h *header, id, sender string, now time.Time) []byte {
	var b bytes.Buffer
	if h.get("date") == nil {
		fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if h.get("message-id") == nil {
		fmt.Fprintf(&b, "Message-ID: <%s.%s@%s>\r\n", id, randomHex(8), c.Hostname)
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
