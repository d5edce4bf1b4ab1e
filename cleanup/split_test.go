package cleanup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayd/internal/memtest"
	"relayd/queue"
)

// hashSigner signs every domain: its signature names the domain and the
// SHA-256 of what it was given (prefix and message), so a test can check
// that each queue entry's signature covers that entry's own content.
type hashSigner struct {
	mu      sync.Mutex
	domains []string
}

func (s *hashSigner) Sign(domain string) (io.Writer, func() ([]byte, error), error) {
	s.mu.Lock()
	s.domains = append(s.domains, domain)
	s.mu.Unlock()
	h := sha256.New()
	return h, func() ([]byte, error) {
		return fmt.Appendf(nil, "DKIM-Signature: d=%s; bh=%s\r\n", domain, hex.EncodeToString(h.Sum(nil))), nil
	}, nil
}

// checkSignature checks the signature at the top of an entry's wire form.
func checkSignature(t *testing.T, wire, domain string) {
	t.Helper()
	sig, rest, _ := strings.Cut(wire, "\r\n")
	sum := sha256.Sum256([]byte(rest))
	if want := "DKIM-Signature: d=" + domain + "; bh=" + hex.EncodeToString(sum[:]); sig != want {
		t.Errorf("signature %q, want %q", sig, want)
	}
}

// byDomain routes a recipient to the smarthost named by its domain's first
// label (a@one.example: "one").
func byDomain(from, fromDomain, rcpt string) string {
	_, d, _ := strings.Cut(rcpt, "@")
	name, _, _ := strings.Cut(d, ".")
	return name
}

// identities: the smarthost "two" may send only as noreply@two.example.
func identities(from, fromDomain string, rcpts []string) string {
	for _, r := range rcpts {
		if byDomain(from, fromDomain, r) == "two" {
			return "noreply@two.example"
		}
	}
	return ""
}

func splitCleanup(t *testing.T, q *queue.Queue, mod func(*Config)) *Cleanup {
	return newCleanup(t, q, func(c *Config) {
		c.Route, c.Identity = byDomain, identities
		if mod != nil {
			mod(c)
		}
	})
}

func rcptsOf(m *queue.Meta) string {
	var s []string
	for _, r := range m.Rcpts {
		s = append(s, r.Addr)
	}
	return strings.Join(s, ",")
}

func tmpEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("uncommitted draft left: tmp/%s", e.Name())
	}
}

// Recipients on two smarthosts: two queue entries, in the order of each
// smarthost's first recipient, each with its own recipients, identity,
// prefix and signature (for its own From's domain), and the same body,
// in a file of its own.
func TestSplitPerSmarthost(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(queue.Config{Dir: dir, MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	sg := &hashSigner{}
	c := splitCleanup(t, q, func(c *Config) { c.Signer = sg })
	msg := "From: App <app@example.com>\r\nTo: a@one.example, b@two.example, c@one.example\r\nBcc: hidden@one.example\r\nSubject: split\r\n\r\nline one\r\nline two\r\n"
	ids, err := c.Submit(context.Background(), smtpSub("a@one.example", "b@two.example", "c@one.example"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Fields(ids)
	if len(list) != 2 {
		t.Fatalf("Submit returned %q, want two queue IDs", ids)
	}
	m1, err := q.Get(list[0])
	if err != nil {
		t.Fatal(err)
	}
	m2, err := q.Get(list[1])
	if err != nil {
		t.Fatal(err)
	}
	if rcptsOf(m1) != "a@one.example,c@one.example" || rcptsOf(m2) != "b@two.example" {
		t.Fatalf("recipients %q and %q", rcptsOf(m1), rcptsOf(m2))
	}
	if m1.From != "app@example.com" || m1.RouteSender != "" {
		t.Errorf("first entry: sender %q, route sender %q", m1.From, m1.RouteSender)
	}
	if m2.From != "noreply@two.example" || m2.RouteSender != "app@example.com" {
		t.Errorf("second entry: sender %q, route sender %q", m2.From, m2.RouteSender)
	}
	if m1.FromDomain != "example.com" || m2.FromDomain != "example.com" {
		t.Errorf("from domains %q, %q: routes match the original From", m1.FromDomain, m2.FromDomain)
	}
	w1, w2 := wire(t, q, list[0]), wire(t, q, list[1])
	checkSignature(t, w1, "example.com")
	checkSignature(t, w2, "two.example")
	if !strings.Contains(w1, "\r\nFrom: App <app@example.com>\r\n") || strings.Contains(w1, "via relayd") || strings.Contains(w1, "Reply-To") {
		t.Errorf("first entry's header changed:\n%s", w1)
	}
	for _, want := range []string{"\r\nFrom: \"App via relayd\" <noreply@two.example>\r\n", "\r\nReply-To: App <app@example.com>\r\n"} {
		if !strings.Contains(w2, want) {
			t.Errorf("second entry lacks %q:\n%s", want, w2)
		}
	}
	for i, w := range []string{w1, w2} {
		if !strings.Contains(w, " id "+list[i]) {
			t.Errorf("entry %d's Received does not name %s:\n%s", i+1, list[i], w)
		}
		if !strings.Contains(w, "\r\nSubject: split\r\n") || !strings.HasSuffix(w, "\r\n\r\nline one\r\nline two\r\n") || strings.Contains(w, "hidden") {
			t.Errorf("entry %d's body:\n%s", i+1, w)
		}
	}
	if !strings.Contains(w2, "\tfor <b@two.example>;") {
		t.Errorf("the one recipient of the second entry is not in its Received:\n%s", w2)
	}
	id1, id2 := messageIDOf(w1), messageIDOf(w2)
	if id1 == "" || id1 != id2 {
		t.Errorf("Message-IDs %q and %q, want one", id1, id2)
	}
	if len(sg.domains) != 2 {
		t.Errorf("signed for %v", sg.domains)
	}
	f1, err1 := os.Stat(filepath.Join(dir, "msg", list[0]))
	f2, err2 := os.Stat(filepath.Join(dir, "msg", list[1]))
	if err1 != nil || err2 != nil || os.SameFile(f1, f2) {
		t.Errorf("entries do not have files of their own: %v %v", err1, err2)
	}
	tmpEmpty(t, dir)

	// Recipients of one smarthost, or no Route: one entry.
	ids, err = c.Submit(context.Background(), smtpSub("a@one.example", "c@one.example"), strings.NewReader(msg))
	if err != nil || len(strings.Fields(ids)) != 1 {
		t.Errorf("one smarthost: %q, %v", ids, err)
	}
	c.Update(Config{Hostname: "relay.example.com", Spool: SpoolOf(q.Create), Identity: identities})
	ids, err = c.Submit(context.Background(), smtpSub("a@one.example", "b@two.example"), strings.NewReader(msg))
	if err != nil || len(strings.Fields(ids)) != 1 {
		t.Errorf("no Route: %q, %v", ids, err)
	}
}

func messageIDOf(wire string) string {
	for _, l := range strings.Split(wire, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Message-ID: "); ok {
			return v
		}
	}
	return ""
}

// A split message with a line over 998 octets: every entry is re-encoded,
// each with its own header, and no draft is left behind.
func TestSplitLongLines(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(queue.Config{Dir: dir, MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	c := splitCleanup(t, q, nil)
	long := strings.Repeat("x", 3000)
	msg := "From: app@example.com\r\nSubject: long\r\n\r\n" + long + "\r\n"
	ids, err := c.Submit(context.Background(), smtpSub("a@one.example", "b@two.example"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Fields(ids)
	if len(list) != 2 {
		t.Fatalf("Submit returned %q", ids)
	}
	for i, id := range list {
		w := wire(t, q, id)
		if !strings.Contains(w, "Content-Transfer-Encoding: quoted-printable") || strings.Contains(w, long) {
			t.Errorf("entry %d not re-encoded:\n%.400s", i+1, w)
		}
		if via := strings.Contains(w, "via relayd"); via != (i == 1) {
			t.Errorf("entry %d's From:\n%.400s", i+1, w)
		}
	}
	tmpEmpty(t, dir)
}

// conflictSpool makes the commit of its nth draft fail: a file already
// holds that draft's msg/ID, and the commit's rename never replaces.
type conflictSpool struct {
	q   *queue.Queue
	dir string
	n   int
	got int
}

func (s *conflictSpool) Create() (Draft, error) {
	d, err := s.q.Create()
	if err == nil {
		if s.got++; s.got == s.n {
			os.WriteFile(filepath.Join(s.dir, "msg", d.ID()), []byte("in the way"), 0o600)
		}
	}
	return d, err
}

// A commit failure on the second entry: 4xx, and no uncommitted draft is
// left (the first entry stays queued: the client's retry duplicates it,
// which is never a loss).
func TestSplitCommitFailure(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(queue.Config{Dir: dir, MinBackoff: time.Minute, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	sp := &conflictSpool{q: q, dir: dir, n: 2}
	c := splitCleanup(t, q, func(c *Config) { c.Spool = sp })
	msg := "From: app@example.com\r\nSubject: s\r\n\r\nbody\r\n"
	_, err = c.Submit(context.Background(), smtpSub("a@one.example", "b@two.example"), strings.NewReader(msg))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 4 {
		t.Fatalf("got %v, want a temporary error", err)
	}
	tmpEmpty(t, dir)
	ents, _ := os.ReadDir(filepath.Join(dir, "msg"))
	if len(ents) != 2 { // the first entry and the file in the way
		t.Errorf("msg/ has %d files, want 2", len(ents))
	}
	// A failure before the commits (the second draft cannot be created)
	// leaves nothing at all.
	for _, e := range ents {
		os.Remove(filepath.Join(dir, "msg", e.Name()))
	}
	c.Update(Config{Hostname: "relay.example.com", Spool: &failingSpool{q: q, n: 2}, Route: byDomain})
	if _, err := c.Submit(context.Background(), smtpSub("a@one.example", "b@two.example"), strings.NewReader(msg)); !errors.As(err, &se) || se.Code/100 != 4 {
		t.Fatalf("got %v, want a temporary error", err)
	}
	tmpEmpty(t, dir)
	if ents, _ := os.ReadDir(filepath.Join(dir, "msg")); len(ents) != 0 {
		t.Errorf("msg/ has %d files, want none", len(ents))
	}
}

// failingSpool refuses its nth Create.
type failingSpool struct {
	q   *queue.Queue
	n   int
	got int
}

func (s *failingSpool) Create() (Draft, error) {
	if s.got++; s.got == s.n {
		return nil, errors.New("no more drafts")
	}
	return s.q.Create()
}

// bigBody yields n bytes of 76-octet lines.
type bigBody struct{ left int }

func (b *bigBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	const line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567890\r\n"
	n := 0
	for n+len(line) <= len(p) && b.left > 0 {
		n += copy(p[n:], line)
		b.left -= len(line)
	}
	if n == 0 {
		n = copy(p, line[:min(len(p), len(line))])
		b.left -= n
	}
	return n, nil
}

// A 20 MB message split into two entries: memory stays bounded (the second
// entry is copied from the first's draft, not held in memory), and each
// entry has the whole body.
func TestSplitMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MB")
	}
	q := newQueue(t)
	c := splitCleanup(t, q, func(c *Config) { c.Signer = &hashSigner{} })
	const size = 20 << 20
	hdr := "From: app@example.com\r\nSubject: big\r\n\r\n"
	var ids string
	var err error
	base, peak := memtest.Peak(func() {
		ids, err = c.Submit(context.Background(), smtpSub("a@one.example", "b@two.example"), io.MultiReader(strings.NewReader(hdr), &bigBody{left: size}))
	})
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Fields(ids)
	if len(list) != 2 {
		t.Fatalf("Submit returned %q", ids)
	}
	for _, id := range list {
		rc, err := q.OpenMessage(id)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, _ := io.Copy(h, rc)
		rc.Close()
		if n < size {
			t.Errorf("%s: %d bytes, want over %d", id, n, size)
		}
	}
	grew := int64(peak) - int64(base)
	t.Logf("heap in use %d KB before, peak %d KB while a %d MB message was split (+%d KB)", base>>10, peak>>10, size>>20, grew>>10)
	if grew > 8<<20 {
		t.Errorf("heap grew by %d KB splitting a %d MB message", grew>>10, size>>20)
	}
}
