package wire

import (
	"bytes"
	"io"
	"sync"

	"github.com/emersion/go-smtp"
)

// WriteData writes body as the content of the DATA command dc, which
// go-smtp's Client.Data returned on this connection: the bytes are those
// io.Copy(dc, body) would send, encoded in bulk and written straight to
// the connection, but the final CRLF, which goes through dc so that dc's
// own writer and state stay consistent (assumptions 1 and 3 of the package
// doc). The caller then ends the command with dc.CloseWithResponse, which
// adds the terminating ".\r\n" and reads the reply.
//
// size is the body's expected length, a hint for the buffers. An error
// means nothing more may be sent, dc's Close included: a truncated
// message must not be terminated (the caller drops the connection).
func (c *Conn) WriteData(dc *smtp.DataCommand, body io.Reader, size int64) error {
	dw, rbuf := newDataWriter(c.rw, size)
	defer dw.release()
	if _, err := io.CopyBuffer(dw, body, rbuf); err != nil {
		return err
	}
	tail, err := dw.finish()
	if err != nil {
		return err
	}
	_, err = dc.Write(tail)
	return err
}

// WriteBody writes body and the terminating ".\r\n" after the seam has
// read a 354 to a DATA it sent: the bytes go-smtp's DataCommand would
// send, in one write with the rest of a small message. The caller reads
// the reply with Reply. After an error nothing more may be sent.
func (c *Conn) WriteBody(body io.Reader, size int64) error {
	dw, rbuf := newDataWriter(c.rw, size)
	defer dw.release()
	if _, err := io.CopyBuffer(dw, body, rbuf); err != nil {
		return err
	}
	return dw.end()
}

// FlushSize is how many encoded bytes the body writer gathers before
// writing them to the wire: large writes, few system calls and TLS
// records.
const FlushSize = 64 << 10

// dataWriter encodes a message for the DATA command in bulk and writes it
// to the wire.
//
// The encoding is exactly the one textproto's DotWriter (go-smtp's
// DataCommand) produces, without going byte by byte:
//   - a '.' at the start of a line gets another '.' (RFC 5321 §4.5.2);
//   - a LF becomes CRLF unless DotWriter is in its CR state, that is unless
//     it follows a run of an odd number of CRs: DotWriter takes the second
//     CR of "\r\r" as data, so "\r\r\n" goes out as "\r\r\r\n" (RFC 5321
//     §2.3.8: no bare LF on the wire; cleanup already guarantees CRLF and
//     refuses bare CR, this is a safety net);
//   - the content ends with CRLF (RFC 5321 §4.1.1.4), added if missing; an
//     empty body is sent as one empty line.
//
// end adds the terminating ".\r\n"; finish instead holds back the final
// CRLF and returns it, for go-smtp's DataCommand to write (see WriteData).
type dataWriter struct {
	w    io.Writer
	bufs *dataBufs
	buf  []byte // encoded, not yet written
	bol  bool   // the next input byte starts a line
	cr   bool   // DotWriter's CR state: the input ends in an odd run of CRs
	any  bool   // some input was written
	err  error  // sticky write error
}

// newDataWriter returns a dataWriter onto w and the read buffer to feed it
// with, both sized for a message of size bytes (small messages, the common
// case, do not hold 64 KiB buffers) and taken from a pool: one pair per
// delivery was a fifth of relayd's garbage under small messages. The caller
// calls release when done with both.
func newDataWriter(w io.Writer, size int64) (*dataWriter, []byte) {
	b := getDataBufs(size)
	return &dataWriter{w: w, bufs: b, buf: b.enc[:0], bol: true}, b.read
}

// dataBufs are the buffers of one dataWriter: enc for the encoded content
// (room for the read buffer's worth with some dots and CRs added), read for
// the source.
type dataBufs struct{ enc, read []byte }

// smallData is the read buffer of messages up to its size; larger ones get
// FlushSize.
const smallData = 8 << 10

var smallBufs, largeBufs sync.Pool

func getDataBufs(size int64) *dataBufs {
	pool, n := &smallBufs, smallData
	if size > smallData {
		pool, n = &largeBufs, FlushSize
	}
	if b, ok := pool.Get().(*dataBufs); ok {
		return b
	}
	return &dataBufs{enc: make([]byte, 0, n+n/8), read: make([]byte, n)}
}

// release returns the buffers to their pool; neither the dataWriter nor
// the read buffer nor what finish returned may be used afterwards.
func (d *dataWriter) release() {
	b := d.bufs
	if b == nil {
		return
	}
	d.bufs, d.buf = nil, nil
	pool := &smallBufs
	if len(b.read) > smallData {
		pool = &largeBufs
	}
	b.enc = b.enc[:0]
	pool.Put(b)
}

// crState reports whether DotWriter is in its CR state before p[i]: the
// CRs right before it (continuing those that ended the previous input when
// they reach back to p's start) are an odd number.
func (d *dataWriter) crState(p []byte, i int) bool {
	k := 0
	for k < i && p[i-1-k] == '\r' {
		k++
	}
	odd := k%2 == 1
	if k == i {
		return odd != d.cr
	}
	return odd
}

// Write encodes p. It returns an error only when the wire fails.
func (d *dataWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := len(p)
	d.any = true
	start := 0 // p[start:] is not yet in buf
	if d.bol && p[0] == '.' {
		d.buf = append(d.buf, '.')
	}
	for pos := 0; ; {
		i := bytes.IndexByte(p[pos:], '\n')
		if i < 0 {
			break
		}
		i += pos
		if !d.crState(p, i) {
			d.buf = append(d.buf, p[start:i]...)
			d.buf = append(d.buf, '\r')
			start = i
		}
		pos = i + 1
		if pos < len(p) && p[pos] == '.' {
			d.buf = append(d.buf, p[start:pos]...)
			d.buf = append(d.buf, '.')
			start = pos
		}
	}
	d.buf = append(d.buf, p[start:]...)
	d.bol = p[n-1] == '\n'
	d.cr = d.crState(p, n)
	if len(d.buf) >= FlushSize {
		if err := d.flush(2); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flush writes all of buf but its last keep bytes.
func (d *dataWriter) flush(keep int) error {
	if len(d.buf) <= keep {
		return nil
	}
	cut := len(d.buf) - keep
	if _, err := d.w.Write(d.buf[:cut]); err != nil {
		d.err = err
		return err
	}
	d.buf = d.buf[:copy(d.buf, d.buf[cut:])]
	return nil
}

// endLine ends the content with CRLF as DotWriter's Close does: a CR
// state gets the LF, any other state within a line (or no content at
// all) gets CRLF.
func (d *dataWriter) endLine() {
	if !d.bol || !d.any {
		if !d.cr {
			d.buf = append(d.buf, '\r')
		}
		d.buf = append(d.buf, '\n')
		d.bol, d.cr, d.any = true, false, true
	}
}

// end ends the content with CRLF, adds the terminating ".\r\n" and writes
// everything.
func (d *dataWriter) end() error {
	if d.err != nil {
		return d.err
	}
	d.endLine()
	d.buf = append(d.buf, ".\r\n"...)
	return d.flush(0)
}

// finish ends the content with CRLF, writes everything but that final CRLF
// and returns it.
func (d *dataWriter) finish() ([]byte, error) {
	if d.err != nil {
		return nil, d.err
	}
	d.endLine()
	if err := d.flush(2); err != nil {
		return nil, err
	}
	return d.buf, nil
}
