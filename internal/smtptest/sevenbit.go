package smtptest

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SevenBit is a minimal plain-text smarthost that does not offer 8BITMIME
// (go-smtp's server always does): EHLO offers only SIZE, every command is
// accepted, and each message is recorded with the MAIL line it came with.
// For tests of the RFC 6152 downgrade; loopback only, no TLS, no AUTH.
type SevenBit struct {
	Addr string
	ln   net.Listener

	mu   sync.Mutex
	msgs []SevenBitMessage
}

// SevenBitMessage is one message the SevenBit server accepted.
type SevenBitMessage struct {
	Mail string // the MAIL command line as sent
	Data []byte // dot-unstuffed, CRLF line endings
}

// NewSevenBit starts the server on 127.0.0.1:0; it is closed by t.Cleanup.
func NewSevenBit(t testing.TB) *SevenBit {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SevenBit{Addr: ln.Addr().String(), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *SevenBit) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	say := func(l string) bool {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write([]byte(l + "\r\n"))
		return err == nil
	}
	say("220 sevenbit.test ESMTP")
	var mail string
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-sevenbit.test")
			say("250 SIZE 100000000")
		case strings.HasPrefix(cmd, "MAIL"):
			mail = strings.TrimSpace(line)
			say("250 2.1.0 Ok")
		case strings.HasPrefix(cmd, "DATA"):
			say("354 go ahead")
			var data bytes.Buffer
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, SevenBitMessage{Mail: mail, Data: data.Bytes()})
			s.mu.Unlock()
			say("250 2.0.0 Ok: queued")
		case strings.HasPrefix(cmd, "QUIT"):
			say("221 bye")
			return
		default: // RCPT, RSET, NOOP
			say("250 Ok")
		}
	}
}

// Messages returns what was accepted so far.
func (s *SevenBit) Messages() []SevenBitMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SevenBitMessage(nil), s.msgs...)
}
