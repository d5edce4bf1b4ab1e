package signer

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"

	"relayd/internal/hdrscan"
)

// MaxHeaderBytes bounds the header block buffered while signing.
const MaxHeaderBytes = 1 << 20

// ErrHeaderTooLarge is returned when the header block exceeds MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("dkim: message header exceeds 1 MiB")

// errAborted is what finish returns after the writer was closed unfinished.
var errAborted = errors.New("dkim: signing aborted")

// oversigned fields are listed in h= once more than they occur, so a copy
// added in transit breaks the signature (RFC 6376 §8.15, §5.4.2).
var oversigned = [...]string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
}

// signedIfPresent fields are signed as often as they occur (RFC 6376 §5.4.1
// recommends them; RFC 8058 §4 requires List-Unsubscribe(-Post) be signed).
// Trace fields (Received, Return-Path) and DKIM-Signature are never signed.
var signedIfPresent = [...]string{
	"Sender", "Resent-Date", "Resent-From", "Resent-Sender", "Resent-To",
	"Resent-Cc", "Resent-Message-ID", "List-Id", "List-Help",
	"List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive", "Content-ID",
	"Content-Description", "Content-Disposition", "Content-Language",
}

// nOver and nSignable index counts: oversigned names first, then
// signedIfPresent.
const (
	nOver     = len(oversigned)
	nSignable = nOver + len(signedIfPresent)
)

// counts holds how often each signable name occurs in a header.
type counts [nSignable]int

// signableIndex maps a lower-case signable name to its index in counts.
var signableIndex = func() map[string]int {
	m := make(map[string]int, nSignable)
	for i, n := range oversigned {
		m[strings.ToLower(n)] = i
	}
	for i, n := range signedIfPresent {
		m[strings.ToLower(n)] = nOver + i
	}
	return m
}()

// maxName is the longest signable name ("Content-Transfer-Encoding").
const maxName = 25

// maxLine is the hard line limit of RFC 5322 §2.1.1, without the CRLF.
const maxLine = 998

// maxHList bounds the h= value. go-msgauth writes h= on one line of its own
// (" h=VALUE;") and cannot fold it, so the value must leave room for that.
const maxHList = maxLine - 8

// Signer signs messages with the loaded keys. It is safe for concurrent use.
type Signer struct {
	log    *slog.Logger
	keys   []*Key
	byDom  map[string][]*Key
	broken map[string]error // domain -> why its key did not load
}

// Keys returns the loaded keys in configuration order.
func (s *Signer) Keys() []Key {
	out := make([]Key, len(s.keys))
	for i, k := range s.keys {
		out[i] = *k
	}
	return out
}

// keysFor selects the keys for a header From domain: the exact domain's
// entries, else the nearest parent domain that has entries. A domain whose
// entry failed to load yields an error, never "no key".
func (s *Signer) keysFor(domain string) ([]*Key, error) {
	for d := normDomain(domain); d != ""; {
		if err := s.broken[d]; err != nil {
			return nil, fmt.Errorf("dkim: key for %s not loaded: %w", d, err)
		}
		if ks := s.byDom[d]; len(ks) > 0 {
			return ks, nil
		}
		_, parent, ok := strings.Cut(d, ".")
		if !ok {
			break
		}
		d = parent
	}
	return nil, nil
}

// Sign starts signing one message whose header From address is in domain.
// It returns all nil when no key covers domain. Otherwise the caller writes
// the complete message (CRLF line endings) to w and then calls finish once,
// which returns one folded, CRLF-terminated DKIM-Signature field per key
// (RSA and Ed25519 keys of one domain each sign: RFC 8463 dual signing).
//
// w also implements io.Closer. A caller that gives up before finish (client
// gone, message too big, I/O error) must Close it: that ends the signing
// goroutines go-msgauth started once the header was complete. Close after
// finish does nothing, so "defer Close" is always right.
func (s *Signer) Sign(domain string) (io.Writer, func() ([]byte, error), error) {
	keys, err := s.keysFor(domain)
	if err != nil || keys == nil {
		return nil, nil, err
	}
	m := &message{keys: keys}
	return m, m.finish, nil
}

// message is one signing in progress: the header block is buffered until the
// blank line (so h= can list every oversigned field once more than it
// occurs), then one go-msgauth signer per key is started, gets the header,
// and the body streams through all of them.
type message struct {
	keys    []*Key
	hdr     []byte
	signers []*dkim.Signer // nil until the header is complete
	// w gathers writes for the signers: each write to a go-msgauth signer
	// is a hand-over to its goroutine through a pipe, so a small message
	// goes to them in one write instead of one per caller's write.
	w    *bufio.Writer
	err  error
	done bool
}

func (m *message) Write(p []byte) (int, error) {
	if m.done {
		return 0, errors.New("dkim: write after finish")
	}
	if m.err != nil {
		return 0, m.err
	}
	if m.w != nil {
		return m.body(p)
	}
	start := max(len(m.hdr)-3, 0)
	n := min(len(p), MaxHeaderBytes+4-len(m.hdr))
	if i := bytes.Index(p[:n], []byte("\r\n\r\n")); i >= 0 {
		// The header ends here at the latest (earlier if the end straddles
		// the previous write): the rest of p is body, not to be copied.
		n = i + 4
	}
	m.hdr = append(m.hdr, p[:n]...)
	if end := headerEnd(m.hdr, start); end >= 0 {
		rest := m.hdr[end:]
		if err := m.start(m.hdr[:end]); err != nil {
			return 0, err
		}
		if _, err := m.body(rest); err != nil {
			return 0, err
		}
		m.hdr = nil
		if _, err := m.body(p[n:]); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(m.hdr) > MaxHeaderBytes {
		m.err = ErrHeaderTooLarge
		return n, m.err
	}
	return len(p), nil
}

func (m *message) body(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := m.w.Write(p)
	if err != nil {
		m.err = fmt.Errorf("dkim: %w", err)
		return n, m.err
	}
	return n, nil
}

// headerEnd returns the offset of the body (just after the empty line that
// ends the header, RFC 5322 §2.1), or -1, searching from start.
func headerEnd(b []byte, start int) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2 // no header fields at all
	}
	if i := bytes.Index(b[start:], []byte("\r\n\r\n")); i >= 0 {
		return start + i + 4
	}
	return -1
}

// start creates one go-msgauth signer per key (a=rsa-sha256 or
// ed25519-sha256 from the key type, c=relaxed/relaxed, RFC 6376 §3.4.2 and
// §3.4.4) with the h= list for this header, and writes it the header block,
// which ends with the empty line.
func (m *message) start(block []byte) error {
	h := headerList(countSignable(block[:len(block)-2]))
	m.signers = make([]*dkim.Signer, 0, len(m.keys))
	ws := make([]io.Writer, 0, len(m.keys))
	for _, k := range m.keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             h,
		})
		if err != nil {
			m.err = fmt.Errorf("dkim: d=%s s=%s: %w", k.Domain, k.Selector, err)
			return m.err
		}
		m.signers = append(m.signers, s)
		ws = append(ws, s)
	}
	m.w = writerPool.Get().(*bufio.Writer)
	m.w.Reset(io.MultiWriter(ws...))
	_, err := m.body(block)
	return err
}

// writerPool holds the buffers of message.w.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// release returns m.w to the pool; nothing may be written afterwards.
func (m *message) release() {
	if m.w != nil {
		m.w.Reset(nil)
		writerPool.Put(m.w)
		m.w = nil
	}
}

// closeAll ends every started signer (and so its goroutine) and returns the
// first error, naming the key.
func (m *message) closeAll() error {
	var first error
	for i, s := range m.signers {
		if err := s.Close(); err != nil && first == nil {
			k := m.keys[i]
			first = fmt.Errorf("dkim: sign for d=%s s=%s: %w", k.Domain, k.Selector, err)
		}
	}
	return first
}

// Close abandons an unfinished signing and releases its goroutines. It is a
// no-op after finish or a previous Close.
func (m *message) Close() error {
	if m.done {
		return nil
	}
	m.done = true
	m.err = errAborted
	m.closeAll()
	m.release()
	m.signers, m.hdr = nil, nil
	return nil
}

func (m *message) finish() ([]byte, error) {
	if m.done {
		if m.err == errAborted {
			return nil, m.err
		}
		return nil, errors.New("dkim: finish called twice")
	}
	if m.err == nil && m.w == nil {
		// Header-only message: the empty line never came.
		if len(m.hdr) > 0 && !bytes.HasSuffix(m.hdr, []byte("\r\n")) {
			m.hdr = append(m.hdr, '\r', '\n')
		}
		m.start(append(m.hdr, '\r', '\n'))
		m.hdr = nil
	}
	m.done = true
	if m.err == nil && m.w != nil {
		if err := m.w.Flush(); err != nil {
			m.err = fmt.Errorf("dkim: %w", err)
		}
	}
	m.release()
	cerr := m.closeAll()
	if m.err != nil {
		return nil, m.err
	}
	if cerr != nil {
		return nil, cerr
	}
	var out bytes.Buffer
	for i, s := range m.signers {
		sig := s.Signature()
		if err := checkField(sig); err != nil {
			k := m.keys[i]
			return nil, fmt.Errorf("dkim: signature for d=%s s=%s: %w", k.Domain, k.Selector, err)
		}
		out.WriteString(sig)
	}
	m.signers, m.w = nil, nil
	return out.Bytes(), nil
}

// checkField makes sure a field from go-msgauth can go on the wire as is:
// CRLF-terminated lines of at most 998 characters (RFC 5322 §2.1.1), every
// continuation line starting with WSP (§2.2.3).
func checkField(f string) error {
	body, ok := strings.CutSuffix(f, "\r\n")
	if !ok {
		return errors.New("field does not end with CRLF")
	}
	for i, line := range strings.Split(body, "\r\n") {
		switch {
		case len(line) > maxLine:
			return fmt.Errorf("line %d has %d characters, more than %d", i+1, len(line), maxLine)
		case strings.ContainsAny(line, "\r\n"):
			return fmt.Errorf("line %d has a bare CR or LF", i+1)
		case i > 0 && line != "" && line[0] != ' ' && line[0] != '\t':
			return fmt.Errorf("continuation line %d does not start with WSP", i+1)
		case i > 0 && strings.TrimLeft(line, " \t") == "":
			return fmt.Errorf("continuation line %d is blank", i+1)
		}
	}
	return nil
}

// countSignable counts the signable fields of a header block (each field
// with its continuation lines and CRLF), without copying it: this runs for
// every message. Fields are found by the scanner the intake uses
// (internal/hdrscan), so "Subject : hi" counts as a Subject.
func countSignable(hdr []byte) counts {
	var c counts
	var buf [maxName]byte
	hdrscan.Fields(hdr, func(name, _ []byte) bool {
		if len(name) > maxName {
			return true
		}
		lower := buf[:len(name)]
		for i, b := range name {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			lower[i] = b
		}
		if i, ok := signableIndex[string(lower)]; ok {
			c[i]++
		}
		return true
	})
	return c
}

// headerList builds h=: each oversigned name once more than it occurs, each
// other recommended name as often as it occurs. go-msgauth cannot fold h=,
// so if the list would not fit on one line (only a header with dozens of
// copies of the same fields gets there) every name is listed at most perName
// times, perName as large as fits: the last copies of each field are still
// signed (§5.4.2 picks from the bottom), and an oversigned name whose copies
// were all listed keeps its extra entry.
func headerList(c counts) []string {
	most := 0
	for _, n := range c {
		most = max(most, n)
	}
	if hLen(&c, most+1) <= maxHList {
		return listUpTo(&c, most+1) // the usual case: no limit needed
	}
	// The largest perName in [2, most+1] that fits; length grows with it.
	lo, hi := 2, most+1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if hLen(&c, mid) <= maxHList {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return listUpTo(&c, lo)
}

// want is how often the name at index i goes into h= when no name may
// appear more than perName times.
func want(c *counts, i, perName int) int {
	n := c[i]
	if i < nOver {
		n++
	}
	return min(n, perName)
}

// name is the signable name at index i, as written into h=.
func name(i int) string {
	if i < nOver {
		return oversigned[i]
	}
	return signedIfPresent[i-nOver]
}

// hLen is the length of strings.Join(listUpTo(c, perName), ":").
func hLen(c *counts, perName int) int {
	n := -1
	for i := range nSignable {
		n += want(c, i, perName) * (len(name(i)) + 1)
	}
	return n
}

func listUpTo(c *counts, perName int) []string {
	total := 0
	for i := range nSignable {
		total += want(c, i, perName)
	}
	h := make([]string, 0, total)
	for i := range nSignable {
		for range want(c, i, perName) {
			h = append(h, name(i))
		}
	}
	return h
}
