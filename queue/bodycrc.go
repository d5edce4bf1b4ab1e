package queue

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// Body checksum.
//
// Commit records the CRC-32C (Castagnoli; hardware-accelerated on amd64
// and arm64) of the body, as Meta.BodyCRC, in the meta of the trailer (and
// so in every meta/ID.json written after it). Before every attempt except
// the first one of a message this process just committed (its pages are
// still those it wrote), the body is read and checked: a mismatch (a bit
// flipped on the disk or in a file edited behind relayd's back) quarantines
// the message into corrupt/ with an ERROR and counts it in
// Stats.Quarantined, instead of delivering corrupted mail. A message
// committed before this check existed has no BodyCRC and is delivered as
// before (on-disk compatibility; older relayd versions ignore the field).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBodyCorrupt says the body does not match its recorded checksum.
var errBodyCorrupt = errors.New("queue: body checksum mismatch")

func formatCRC(c uint32) string { return string(appendHex8(nil, c)) }

var crcBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// checkBody reads m's body and compares its CRC-32C with m.BodyCRC (no
// check when the meta has none). A read error is returned as it is; a
// mismatch wraps errBodyCorrupt.
func (q *Queue) checkBody(m *Meta) error {
	if m.BodyCRC == "" {
		return nil
	}
	want, err := parseHex8([]byte(m.BodyCRC))
	if err != nil || len(m.BodyCRC) != 8 {
		return fmt.Errorf("%w: meta records %q", errBodyCorrupt, m.BodyCRC)
	}
	rc, err := q.opener(m)()
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, int64(len(m.Prefix))); err != nil {
		return fmt.Errorf("queue: read message %s: %w", m.ID, err)
	}
	bp := crcBufPool.Get().(*[]byte)
	defer crcBufPool.Put(bp)
	var got uint32
	for {
		n, err := rc.Read(*bp)
		got = crc32.Update(got, castagnoli, (*bp)[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("queue: read message %s: %w", m.ID, err)
		}
	}
	if got != want {
		return fmt.Errorf("%w: body of %s has CRC-32C %s, its meta recorded %s", errBodyCorrupt, m.ID, formatCRC(got), m.BodyCRC)
	}
	return nil
}
