package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"relayd/internal/reply"
)

// ErrParams is wrapped by every error Compose returns for unusable input.
var ErrParams = errors.New("dsn: invalid notice parameters")

// Params is everything Compose needs besides the notice itself; the caller
// chooses every value, so the output is deterministic.
type Params struct {
	Hostname  string    // Reporting-MTA and MAILER-DAEMON@Hostname
	Now       time.Time // Date header
	MessageID string    // "<...@hostname>" chosen by the caller
	Boundary  string    // MIME boundary chosen by the caller (so output is deterministic)
	To        string    // who receives the notice (normally n.From; the admin for a failed notice)
	// MaxFull: RET=FULL includes the whole original as message/rfc822 only
	// when n.Size <= MaxFull (DefaultMaxFull when 0, never when negative);
	// otherwise headers only.
	MaxFull int64
}

// defaultBoundary is used when Params.Boundary is empty.
const defaultBoundary = "=_relayd_report"

// Subject returns the Subject of a notice of the given kind.
func Subject(kind Kind) string {
	switch kind {
	case Failed:
		return "Undelivered Mail Returned to Sender"
	case Delayed:
		return "Delayed Mail (still being retried)"
	case Relayed:
		return "Successful Mail Relay Notification"
	}
	return "Delivery Status Notification"
}

// Compose writes the RFC 3464 notice for n to w. It fails only for unusable
// parameters (ErrParams) or when w fails; an unreadable original is noted in
// the text and left out, because the notice must still go out. Nothing is
// written to w unless the whole notice was composed.
func Compose(n Notice, p Params, w io.Writer) error {
	host := asciiOnly(reply.OneLine(p.Hostname))
	to := reply.OneLine(p.To)
	msgID := asciiOnly(reply.OneLine(p.MessageID))
	switch {
	case host == "" || strings.ContainsAny(host, " <>@"):
		return fmt.Errorf("%w: hostname %q", ErrParams, p.Hostname)
	case to == "":
		return fmt.Errorf("%w: empty To", ErrParams)
	case msgID == "" || strings.Contains(msgID, " "):
		return fmt.Errorf("%w: message-id %q", ErrParams, p.MessageID)
	case p.Now.IsZero():
		return fmt.Errorf("%w: zero Now", ErrParams)
	case len(n.Rcpts) == 0:
		return fmt.Errorf("%w: notice without recipients", ErrParams)
	}
	switch n.Kind {
	case Failed, Delayed, Relayed:
	default:
		return fmt.Errorf("%w: unknown notice kind %q", ErrParams, n.Kind)
	}
	base := p.Boundary
	if base == "" {
		base = defaultBoundary
	}
	if !validBoundary(base) {
		return fmt.Errorf("%w: boundary %q", ErrParams, p.Boundary)
	}
	if !strings.HasPrefix(msgID, "<") {
		msgID = "<" + strings.Trim(msgID, "<>") + ">"
	}

	reps := make([]rcptReport, len(n.Rcpts))
	for i, r := range n.Rcpts {
		reps[i] = report(n.Kind, r)
	}
	att := readOriginal(n, p.MaxFull)
	text, textCTE, err := encodeText(humanText(n, host, p.Now, reps, att))
	if err != nil {
		return err
	}
	status := deliveryStatus(n, host, reps)
	boundary, err := chooseBoundary(base, text, status, att.body)
	if err != nil {
		return err
	}

	var b bytes.Buffer
	b.Grow(len(text) + len(status) + len(att.body) + 2048)
	writeField(&b, "From", "Mail Delivery System <MAILER-DAEMON@"+host+">")
	writeField(&b, "To", "<"+strings.Trim(to, "<>")+">")
	writeField(&b, "Subject", Subject(n.Kind))
	writeField(&b, "Date", rfc5322Date(p.Now))
	writeField(&b, "Message-ID", msgID)
	writeField(&b, "Auto-Submitted", "auto-replied") // RFC 3834 §5
	writeField(&b, "MIME-Version", "1.0")
	// RFC 6522 §3: multipart/report with report-type delivery-status.
	writeField(&b, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	// RFC 2045 §6.4: a multipart is 7bit unless a part is 8bit.
	cte := "7bit"
	if att.eightBit {
		cte = "8bit"
	}
	writeField(&b, "Content-Transfer-Encoding", cte)
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")

	b.WriteString("\r\n--" + boundary + "\r\n")
	writeField(&b, "Content-Description", "Notification")
	writeField(&b, "Content-Type", "text/plain; charset=utf-8")
	writeField(&b, "Content-Transfer-Encoding", textCTE)
	b.WriteString("\r\n")
	b.Write(text)

	b.WriteString("\r\n--" + boundary + "\r\n")
	writeField(&b, "Content-Description", "Delivery report")
	writeField(&b, "Content-Type", "message/delivery-status")
	b.WriteString("\r\n")
	b.Write(status)

	if att.body != nil {
		b.WriteString("\r\n--" + boundary + "\r\n")
		writeField(&b, "Content-Description", att.description)
		writeField(&b, "Content-Type", att.contentType)
		if att.eightBit {
			writeField(&b, "Content-Transfer-Encoding", "8bit")
		}
		b.WriteString("\r\n")
		b.Write(att.body)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")

	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("dsn: writing notice: %w", err)
	}
	return nil
}

// deliveryStatus is the message/delivery-status body (RFC 3464 §2.1): the
// per-message fields, then one block per recipient, each block ended by an
// empty line.
func deliveryStatus(n Notice, host string, reps []rcptReport) []byte {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+host) // §2.2.2
	if id := asciiOnly(reply.OneLine(n.ID)); id != "" {
		writeField(&b, "X-Relayd-Queue-ID", id) // §2.4 extension field
	}
	if env := asciiOnly(reply.OneLine(n.EnvID)); env != "" {
		writeField(&b, "Original-Envelope-Id", env) // §2.2.1
	}
	if !n.Arrival.IsZero() {
		writeField(&b, "Arrival-Date", rfc5322Date(n.Arrival)) // §2.2.5
	}
	remote := remoteHost(n.RemoteMTA)
	for _, r := range reps {
		b.WriteString("\r\n")
		if r.orig != "" {
			writeField(&b, "Original-Recipient", r.orig) // §2.3.1
		}
		writeField(&b, "Final-Recipient", r.final) // §2.3.2
		writeField(&b, "Action", r.action)         // §2.3.3
		writeField(&b, "Status", r.status)         // §2.3.4
		if remote != "" && r.code != 0 {
			// §2.3.5: only an MTA that answered reported the status.
			writeField(&b, "Remote-MTA", "dns; "+remote)
		}
		if r.diag != "" {
			writeField(&b, "Diagnostic-Code", r.diag) // §2.3.6
		}
		if !n.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", rfc5322Date(n.LastAttempt)) // §2.3.7
		}
		if r.action == "delayed" && !n.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", rfc5322Date(n.WillRetryUntil)) // §2.3.9
		}
	}
	return b.Bytes()
}

// rfc5322Date formats t as an RFC 5322 §3.3 date-time in t's own zone.
func rfc5322Date(t time.Time) string {
	return t.Format("Mon, 02 Jan 2006 15:04:05 -0700")
}

// validBoundary checks RFC 2046 §5.1.1: 1-70 bcharsnospace (spaces are not
// accepted here, to keep it simple).
func validBoundary(s string) bool {
	if len(s) == 0 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || strings.IndexByte("'()+_,-./:=?", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// chooseBoundary returns base, or the first deterministic variant of it
// that occurs in none of the parts (RFC 2046 §5.1.1: the boundary must not
// appear inside the encapsulated parts).
func chooseBoundary(base string, parts ...[]byte) (string, error) {
	cand := base
	for i := 0; i < 1000; i++ {
		if i > 0 {
			stem := base
			if len(stem) > 60 {
				stem = stem[:60]
			}
			cand = stem + "=" + strconv.Itoa(i)
		}
		clash := false
		for _, p := range parts {
			if bytes.Contains(p, []byte("--"+cand)) {
				clash = true
				break
			}
		}
		if !clash {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%w: no usable MIME boundary derived from %q", ErrParams, base)
}
