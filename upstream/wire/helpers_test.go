package wire

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// ioTimeout bounds every read and write of the tests' connections.
const ioTimeout = 5 * time.Second

// timedConn gives every Read and Write a fresh deadline, as upstream's
// deadlineConn does (go-smtp's Client clears the deadlines it sets).
type timedConn struct{ net.Conn }

func (c timedConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(ioTimeout))
	return c.Conn.Read(p)
}

func (c timedConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	return c.Conn.Write(p)
}

// goServer is a go-smtp server on 127.0.0.1 that keeps every message it
// receives and every byte its clients sent.
type goServer struct {
	addr string
	mu   sync.Mutex
	msgs [][]byte
	raw  bytes.Buffer // what clients sent, all connections in order
}

// newGoServer starts a go-smtp server with no line limit (bodies in the
// tests have lines of up to 5000 octets). Its DATA refuses a message whose
// length is a multiple of 5 with a reply naming the message's hash, so the
// replies depend on the bytes received too.
func newGoServer(t testing.TB) *goServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &goServer{addr: l.Addr().String()}
	s := smtp.NewServer(g)
	s.Domain = "wire.test"
	s.MaxLineLength = 0
	s.ReadTimeout, s.WriteTimeout = ioTimeout, ioTimeout
	s.ErrorLog = log.New(io.Discard, "", 0)
	go s.Serve(&recListener{Listener: l, g: g})
	t.Cleanup(func() { s.Close() })
	return g
}

// dial connects a go-smtp Client to g, greeted and past EHLO; the second
// value is the connection the Client uses.
func (g *goServer) dial(t testing.TB) (*smtp.Client, net.Conn) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", g.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	conn := timedConn{raw}
	c := smtp.NewClient(conn)
	if err := c.Hello("client.wire.test"); err != nil {
		t.Fatal(err)
	}
	return c, conn
}

// take returns the messages and client bytes received since the last call.
func (g *goServer) take() ([][]byte, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, r := g.msgs, append([]byte(nil), g.raw.Bytes()...)
	g.msgs = nil
	g.raw.Reset()
	return m, r
}

func (g *goServer) NewSession(*smtp.Conn) (smtp.Session, error) { return &goSession{g: g}, nil }

type goSession struct{ g *goServer }

func (*goSession) Reset()                               {}
func (*goSession) Logout() error                        { return nil }
func (*goSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*goSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s *goSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.g.mu.Lock()
	s.g.msgs = append(s.g.msgs, b)
	s.g.mu.Unlock()
	if len(b)%5 == 0 {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: fmt.Sprintf("refused %x", sha256.Sum256(b))}
	}
	return nil
}

// recListener records what every accepted connection reads.
type recListener struct {
	net.Listener
	g *goServer
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c, g: l.g}, nil
}

type recConn struct {
	net.Conn
	g *goServer
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.g.mu.Lock()
	c.g.raw.Write(p[:n])
	c.g.mu.Unlock()
	return n, err
}

// chunkReader returns b in chunks of random sizes (1 to max), so the
// encoder's state carries across reads at every kind of byte.
type chunkReader struct {
	b   []byte
	rng *rand.Rand
	max int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rng.IntN(r.max))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// firstDiff describes where a and b first differ.
func firstDiff(a, b []byte) string {
	i := 0
	for i < min(len(a), len(b)) && a[i] == b[i] {
		i++
	}
	return fmt.Sprintf("at byte %d of %d/%d: %q vs %q", i, len(a), len(b), a[i:min(i+24, len(a))], b[i:min(i+24, len(b))])
}
