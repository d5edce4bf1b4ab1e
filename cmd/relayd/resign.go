package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strings"

	"relayd/cleanup"
	"relayd/internal/hdrscan"
	"relayd/queue"
	"relayd/signer"
)

// `relayd queue resign [ID...|--all]` (issue 16): a message held while no
// DKIM key covered its From domain left unsigned; once a key is added, the
// admin signs the held messages with the current keys. The old
// DKIM-Signature fields of the prefix are replaced; the body file is never
// rewritten (queue.ReplacePrefix).

var errNoKey = errors.New("no DKIM key covers its From domain")

// resign signs each message with the current keys and returns how many it
// signed; messages without a key for their domain are skipped.
func (d *daemon) resign(ids []string) (int, error) {
	d.mu.Lock()
	s := d.sign
	d.mu.Unlock()
	if s == nil {
		return 0, errors.New("no [[dkim]] key is configured")
	}
	n := 0
	var errs []error
	for _, id := range ids {
		var domain string
		err := d.q.ReplacePrefix(id, func(m *queue.Meta, msg io.Reader) ([]byte, error) {
			p, dom, err := resignMessage(s, m.Prefix, msg)
			domain = dom
			return p, err
		})
		switch {
		case errors.Is(err, errNoKey):
			d.log.Info("queue resign: skipped", "id", id, "domain", domain, "reason", err.Error())
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		default:
			n++
			d.log.Info("queue resign: signed with the current keys", "id", id, "domain", domain)
		}
	}
	return n, errors.Join(errs...)
}

// resignMessage returns the new prefix of a stored message: the old one
// without its DKIM-Signature fields (relayd's own come first), preceded by
// new signatures for the header From domain.
func resignMessage(s *signer.Signer, prefix []byte, msg io.Reader) ([]byte, string, error) {
	if _, err := io.CopyN(io.Discard, msg, int64(len(prefix))); err != nil {
		return nil, "", fmt.Errorf("read message: %w", err)
	}
	var kept bytes.Buffer
	hdrscan.Fields(prefix, func(name, raw []byte) bool {
		if !hdrscan.Lower(name, "dkim-signature") {
			kept.Write(raw)
		}
		return true
	})
	stripped := kept.Bytes()
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(stripped), msg), 64<<10)
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		hdr = append(hdr, line...)
		if len(hdr) > signer.MaxHeaderBytes {
			return nil, "", signer.ErrHeaderTooLarge
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, "", fmt.Errorf("read message: %w", err)
		}
		if err == nil && (string(line) == "\r\n") {
			break
		}
	}
	domain := ""
	hdrscan.Fields(hdr, func(name, raw []byte) bool {
		if !hdrscan.Lower(name, "from") {
			return true
		}
		v := strings.TrimSpace(strings.ReplaceAll(string(hdrscan.Value(raw)), "\r\n", ""))
		if a, err := mail.ParseAddress(v); err == nil {
			domain = cleanup.Domain(a.Address)
		}
		return false
	})
	if domain == "" {
		return nil, "", fmt.Errorf("%w (no From address found)", errNoKey)
	}
	w, finish, err := s.Sign(domain)
	if err != nil {
		return nil, domain, err
	}
	if w == nil {
		return nil, domain, errNoKey
	}
	if c, ok := w.(io.Closer); ok {
		defer c.Close()
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, domain, err
	}
	if _, err := io.Copy(w, br); err != nil {
		return nil, domain, err
	}
	sig, err := finish()
	if err != nil {
		return nil, domain, err
	}
	return append(sig, stripped...), domain, nil
}

// logUnsigned counts, at start-up, the queued messages that are unsigned
// although a key now covers their From domain, and says how to sign them.
func (d *daemon) logUnsigned(s *signer.Signer) {
	if s == nil {
		return
	}
	counts := map[string]int{}
	d.q.List(func(m *queue.Meta) error {
		if bytes.Contains(m.Prefix, []byte("DKIM-Signature:")) {
			return nil
		}
		rc, err := d.q.OpenMessage(m.ID)
		if err != nil {
			return nil
		}
		defer rc.Close()
		_, domain, err := resignMessage(s, m.Prefix, io.LimitReader(rc, int64(len(m.Prefix))+signer.MaxHeaderBytes))
		if err == nil || !errors.Is(err, errNoKey) && domain != "" {
			counts[domain]++
		}
		return nil
	})
	for domain, n := range counts {
		d.log.Warn("queued messages are unsigned although a DKIM key now covers their From domain; sign them with: relayd queue resign --all",
			"domain", domain, slog.Int("unsigned", n))
	}
}
