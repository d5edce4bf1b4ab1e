package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
)

// A committed message is one file, msg/ID:
//
//	body | meta JSON | trailer
//
// The trailer is fixed-size so the meta can be found from the end of the
// file: "\nRELAYD-META1 " + the JSON's length (8 hex digits) + " " + its
// CRC-32 (IEEE, 8 hex digits) + "\n", 32 bytes. The body is everything
// before the JSON; its length is also Meta.Size - len(Meta.Prefix), and a
// reader checks both agree. The trailer holds the meta as committed; later
// state changes live in meta/ID.json, which takes precedence.
const (
	trailerMagic = "\nRELAYD-META1 "
	trailerLen   = len(trailerMagic) + 8 + 1 + 8 + 1
	// maxMetaLen bounds the JSON a trailer may announce, so a corrupt
	// length cannot make a reader allocate gigabytes. A meta holds an
	// envelope and a header prefix: far below this.
	maxMetaLen = 16 << 20
)

// appendTrailer appends meta and its trailer to dst.
func appendTrailer(dst, meta []byte) []byte {
	dst = append(dst, meta...)
	dst = append(dst, trailerMagic...)
	dst = appendHex8(dst, uint32(len(meta)))
	dst = append(dst, ' ')
	dst = appendHex8(dst, crc32.ChecksumIEEE(meta))
	return append(dst, '\n')
}

func appendHex8(dst []byte, v uint32) []byte {
	const hex = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		dst = append(dst, hex[(v>>(4*uint(i)))&15])
	}
	return dst
}

// parseTrailer decodes the last trailerLen bytes of a message file.
func parseTrailer(t []byte) (n int64, crc uint32, err error) {
	if len(t) != trailerLen || string(t[:len(trailerMagic)]) != trailerMagic ||
		t[len(trailerMagic)+8] != ' ' || t[trailerLen-1] != '\n' {
		return 0, 0, errors.New("no meta trailer at the end of the file")
	}
	p := t[len(trailerMagic):]
	l, err1 := parseHex8(p[:8])
	c, err2 := parseHex8(p[9:17])
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("meta trailer: %w", err)
	}
	if l > maxMetaLen {
		return 0, 0, fmt.Errorf("meta trailer announces %d bytes of meta", l)
	}
	return int64(l), c, nil
}

func parseHex8(b []byte) (uint32, error) {
	for _, c := range b { // ParseUint also takes "+", "_" and upper case; the writer never does
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, fmt.Errorf("bad hex %q", b)
		}
	}
	v, err := strconv.ParseUint(string(b), 16, 32)
	return uint32(v), err
}

// readTrailer reads the meta JSON at the end of f, a message file of size
// bytes, and returns it with the length of the body before it.
func readTrailer(f *os.File, size int64) (meta []byte, body int64, err error) {
	if size < int64(trailerLen) {
		return nil, 0, fmt.Errorf("file has %d bytes, too short for a meta trailer", size)
	}
	var t [trailerLen]byte
	if _, err := f.ReadAt(t[:], size-int64(trailerLen)); err != nil {
		return nil, 0, fmt.Errorf("read meta trailer: %w", err)
	}
	n, crc, err := parseTrailer(t[:])
	if err != nil {
		return nil, 0, err
	}
	body = size - int64(trailerLen) - n
	if body < 0 {
		return nil, 0, fmt.Errorf("meta trailer announces %d bytes of meta in a %d-byte file", n, size)
	}
	meta = make([]byte, n)
	if _, err := f.ReadAt(meta, body); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, 0, fmt.Errorf("read meta: %w", err)
	}
	if crc32.ChecksumIEEE(meta) != crc {
		return nil, 0, errors.New("meta checksum mismatch")
	}
	return meta, body, nil
}

// decodeMeta parses a meta (from meta/ID.json or a trailer); src names it
// in errors.
func decodeMeta(b []byte, src string) (*Meta, error) {
	m := new(Meta)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", src, err)
	}
	if m.Version < 1 || m.Version > metaVersion {
		return nil, fmt.Errorf("%s: unsupported meta version %d", src, m.Version)
	}
	return m, nil
}
