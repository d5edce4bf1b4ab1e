package signer

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// MaxHeaderBytes bounds the header block buffered while signing.
const MaxHeaderBytes = 1 << 20

// ErrHeaderTooLarge is returned when the header block exceeds MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("dkim: message header exceeds 1 MiB")

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

// Signer signs messages with the loaded keys. It is safe for concurrent use.
type Signer struct {
	clock  func() time.Time
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
func (s *Signer) Sign(domain string) (io.Writer, func() ([]byte, error), error) {
	keys, err := s.keysFor(domain)
	if err != nil || keys == nil {
		return nil, nil, err
	}
	m := &message{s: s, keys: keys, body: newRelaxedBody(sha256.New())}
	return m, m.finish, nil
}

// message is one signing in progress: the header block is buffered until the
// blank line, the body streams through the canonicaliser into one hash.
type message struct {
	s      *Signer
	keys   []*Key
	hdr    []byte
	inBody bool
	body   *relaxedBody
	err    error
	done   bool
}

func (m *message) Write(p []byte) (int, error) {
	if m.done {
		return 0, errors.New("dkim: write after finish")
	}
	if m.err != nil {
		return 0, m.err
	}
	if m.inBody {
		return m.body.Write(p)
	}
	start := max(len(m.hdr)-3, 0)
	n := min(len(p), MaxHeaderBytes+4-len(m.hdr))
	m.hdr = append(m.hdr, p[:n]...)
	if end := headerEnd(m.hdr, start); end >= 0 {
		m.inBody = true
		m.body.Write(m.hdr[end:])
		m.body.Write(p[n:])
		m.hdr = m.hdr[:end-2] // keep each field's CRLF, drop the blank line
		return len(p), nil
	}
	if len(m.hdr) > MaxHeaderBytes {
		m.err = ErrHeaderTooLarge
		return n, m.err
	}
	return len(p), nil
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

func (m *message) finish() ([]byte, error) {
	if m.done {
		return nil, errors.New("dkim: finish called twice")
	}
	m.done = true
	if m.err != nil {
		return nil, m.err
	}
	if !m.inBody && len(m.hdr) > 0 && !bytes.HasSuffix(m.hdr, []byte("\r\n")) {
		m.hdr = append(m.hdr, '\r', '\n') // header-only message
	}
	fields := splitFields(m.hdr)
	m.hdr = nil
	bh := base64.StdEncoding.EncodeToString(m.body.Sum())
	h := headerList(fields)
	t := m.s.clock()
	var out bytes.Buffer
	for _, k := range m.keys {
		sig, err := signOne(k, fields, h, bh, t)
		if err != nil {
			return nil, fmt.Errorf("dkim: sign for d=%s s=%s: %w", k.Domain, k.Selector, err)
		}
		out.WriteString(sig)
	}
	return out.Bytes(), nil
}

// splitFields cuts a header block into fields, each with its continuation
// lines and final CRLF.
func splitFields(hdr []byte) []string {
	var fields []string
	for len(hdr) > 0 {
		i := bytes.Index(hdr, []byte("\r\n"))
		line := hdr
		if i >= 0 {
			line = hdr[:i+2]
		}
		hdr = hdr[len(line):]
		if len(fields) > 0 && (line[0] == ' ' || line[0] == '\t') {
			fields[len(fields)-1] += string(line)
		} else {
			fields = append(fields, string(line))
		}
	}
	return fields
}

func fieldName(f string) string {
	name, _, ok := strings.Cut(f, ":")
	if !ok {
		return ""
	}
	return strings.ToLower(strings.TrimRight(name, " \t"))
}

// headerList builds h=: each oversigned name once more than it occurs, each
// other recommended name as often as it occurs.
func headerList(fields []string) []string {
	count := make(map[string]int)
	for _, f := range fields {
		count[fieldName(f)]++
	}
	var h []string
	for _, n := range oversigned {
		for range count[strings.ToLower(n)] + 1 {
			h = append(h, n)
		}
	}
	for _, n := range signedIfPresent {
		for range count[strings.ToLower(n)] {
			h = append(h, n)
		}
	}
	return h
}

// signOne computes one DKIM-Signature field (RFC 6376 §3.7): the selected
// fields, picked from the bottom up (§5.4.2), then the signature field itself
// with an empty b=, all relaxed-canonicalised, hashed with SHA-256 and signed
// (RSASSA-PKCS1-v1_5, or PureEdDSA over the hash for Ed25519, RFC 8463 §3).
func signOne(k *Key, fields, h []string, bh string, t time.Time) (string, error) {
	alg := "rsa-sha256"
	opts := crypto.Hash(crypto.SHA256)
	if k.Algorithm == AlgEd25519 {
		alg, opts = "ed25519-sha256", crypto.Hash(0)
	}
	prefix := formatPrefix([]string{
		"v=1", "a=" + alg, "c=relaxed/relaxed", "d=" + k.Domain,
		"s=" + k.Selector, "t=" + strconv.FormatInt(t.Unix(), 10),
	}, h, "bh="+bh)

	byName := make(map[string][]string)
	for _, f := range fields {
		n := fieldName(f)
		byName[n] = append(byName[n], f)
	}
	hh := sha256.New()
	for _, name := range h {
		n := strings.ToLower(name)
		inst := byName[n]
		if len(inst) == 0 {
			continue // oversigned: counts as a null string (§5.4.2)
		}
		io.WriteString(hh, relaxedHeader(inst[len(inst)-1]))
		byName[n] = inst[:len(inst)-1]
	}
	self := relaxedHeader(prefix + "b=")
	io.WriteString(hh, strings.TrimSuffix(self, "\r\n"))
	sig, err := k.signer.Sign(rand.Reader, hh.Sum(nil), opts)
	if err != nil {
		return "", err
	}
	return prefix + "b=" + foldBase64(base64.StdEncoding.EncodeToString(sig), len(" b=")) + "\r\n", nil
}

const lineMax = 78 // RFC 5322 §2.1.1 "SHOULD" limit, without CRLF

// formatPrefix lays out "DKIM-Signature: tag; tag;" folded with CRLF TAB so no
// line exceeds lineMax; h= is folded after colons (FWS is allowed there,
// RFC 6376 §3.5). The result ends with the FWS before the b= tag.
func formatPrefix(tags, h []string, bh string) string {
	var b strings.Builder
	b.WriteString("DKIM-Signature:")
	col := b.Len()
	put := func(tok string, sep string) {
		if col+len(sep)+len(tok) > lineMax {
			b.WriteString("\r\n\t")
			col = 8 // a TAB counts as up to 8 columns
			sep = ""
		}
		b.WriteString(sep)
		b.WriteString(tok)
		col += len(sep) + len(tok)
	}
	for _, t := range tags {
		put(t+";", " ")
	}
	for i, n := range h {
		tok := n + ":"
		sep := ""
		if i == 0 {
			tok, sep = "h="+tok, " "
		}
		if i == len(h)-1 {
			tok = strings.TrimSuffix(tok, ":") + ";"
		}
		put(tok, sep)
	}
	put(bh+";", " ")
	b.WriteString("\r\n\t")
	return b.String()
}

// foldBase64 breaks a base64 value into lines of at most lineMax columns
// (FWS is allowed anywhere in b=, RFC 6376 §3.5), the first one starting at
// column first.
func foldBase64(s string, first int) string {
	var b strings.Builder
	room := lineMax - 8 - first
	for len(s) > room {
		b.WriteString(s[:room])
		b.WriteString("\r\n\t")
		s = s[room:]
		room = lineMax - 8
	}
	b.WriteString(s)
	return b.String()
}
