package cleanup

import (
	"fmt"
	"io"
)

// output is where one copy of a message goes: a draft, watched for 8-bit
// octets and long lines, and the signer when a key covers the domain.
type output struct {
	sink   io.Writer
	watch  *watch
	finish func() ([]byte, error) // nil: unsigned
	closer io.Closer              // the signer's writer, closed when done
}

func (o *output) close() {
	if o.closer != nil {
		o.closer.Close() // a no-op after finish; releases an abandoned signing
	}
}

// startOutput starts a copy into draft: the signer (if any) first sees the
// prefix, then, through sink, the message as it goes on the wire; its own
// DKIM-Signature fields are prepended last.
func (c *Config) startOutput(draft Draft, domain string, prefix []byte, id string) (*output, error) {
	o := &output{watch: &watch{w: draft}}
	o.sink = o.watch
	if c.Signer == nil {
		return o, nil
	}
	w, fin, err := c.Signer.Sign(domain)
	if err != nil {
		return o, fmt.Errorf("%w: %w", ErrSign, err)
	}
	if cl, ok := w.(io.Closer); ok {
		o.closer = cl
	}
	if w == nil {
		if domain != "" {
			c.Logger.Debug("no DKIM key for domain, relaying unsigned", "id", id, "domain", domain)
		}
		return o, nil
	}
	if _, err := w.Write(prefix); err != nil {
		return o, fmt.Errorf("%w: %w", ErrSign, err)
	}
	o.sink, o.finish = io.MultiWriter(o.watch, w), fin
	return o, nil
}
