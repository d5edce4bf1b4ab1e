package upstream

import (
	"bytes"
	"io"
	"sync"
)

// dataFlushAt is how many encoded bytes dataWriter gathers before writing
// them to the wire: large writes, few system calls and TLS records.
const dataFlushAt = 64 << 10

// dataWriter encodes a message for the DATA command in bulk and writes it
// to the wire, which is the connection go-smtp's Client writes to (so every
// write runs under deadlineConn).
//
// The encoding is the one textproto's DotWriter produces, without going
// byte by byte:
//   - a '.' at the start of a line gets another '.' (RFC 5321 §4.5.2);
//   - a LF not preceded by CR becomes CRLF (RFC 5321 §2.3.8: no bare LF on
//     the wire; cleanup already guarantees CRLF, this is a safety net);
//   - the content ends with CRLF (RFC 5321 §4.1.1.4), added if missing.
//
// dataWriter never writes the terminating ".\r\n" and holds back the final
// CRLF: finish returns it, and the caller hands it to go-smtp's DataCommand,
// whose Close then adds the terminator, flushes and reads the reply. That
// keeps the Client's own writer and state consistent for the next
// transaction on the connection.
type dataWriter struct {
	w    io.Writer
	bufs *dataBufs
	buf  []byte // encoded, not yet written
	bol  bool   // the next input byte starts a line
	cr   bool   // the last input byte was CR
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
// dataFlushAt.
const smallData = 8 << 10

var smallBufs, largeBufs sync.Pool

func getDataBufs(size int64) *dataBufs {
	pool, n := &smallBufs, smallData
	if size > smallData {
		pool, n = &largeBufs, dataFlushAt
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

// Write encodes p. It returns an error only when the wire fails.
func (d *dataWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := len(p)
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
		if !(i > 0 && p[i-1] == '\r' || i == 0 && d.cr) {
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
	d.cr = p[n-1] == '\r'
	if len(d.buf) >= dataFlushAt {
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

// end ends the content with CRLF, adds the terminating ".\r\n" and writes
// everything: the end of DATA on the pipelined path, in one write with the
// rest of a small message.
func (d *dataWriter) end() error {
	if d.err != nil {
		return d.err
	}
	if !d.bol {
		if !d.cr {
			d.buf = append(d.buf, '\r')
		}
		d.buf = append(d.buf, '\n')
	}
	d.buf = append(d.buf, ".\r\n"...)
	return d.flush(0)
}

// finish ends the content with CRLF, writes everything but that final CRLF
// and returns it (empty when nothing at all was written: an empty body).
func (d *dataWriter) finish() ([]byte, error) {
	if d.err != nil {
		return nil, d.err
	}
	if !d.bol {
		if !d.cr {
			d.buf = append(d.buf, '\r')
		}
		d.buf = append(d.buf, '\n')
		d.bol, d.cr = true, false
	}
	if err := d.flush(2); err != nil {
		return nil, err
	}
	return d.buf, nil
}
