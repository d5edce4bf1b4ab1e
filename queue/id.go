package queue

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// idAlphabet is Crockford's base32: digits and upper-case letters without
// I, L, O, U. Its ASCII order equals its numeric order, so IDs sort by time.
const idAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const (
	idTimeLen = 12 // 60 bits of Unix microseconds: good for 36,000 years
	idRandLen = 6  // 30 random bits from crypto/rand
	idLen     = idTimeLen + idRandLen
)

// newID returns an ID unique across restarts and hosts and sortable by time.
func newID(now time.Time) string {
	var b [idLen]byte
	us := uint64(now.UnixMicro())
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = idAlphabet[us&31]
		us >>= 5
	}
	var r [4]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	rn := binary.BigEndian.Uint32(r[:])
	for i := idLen - 1; i >= idTimeLen; i-- {
		b[i] = idAlphabet[rn&31]
		rn >>= 5
	}
	return string(b[:])
}

// validID reports whether id is exactly what newID produces. IDs become file
// names, so anything else (slashes, dots, lower case) is refused.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return false
		}
	}
	return true
}

func isIDChar(c byte) bool {
	switch {
	case c >= '0' && c <= '9':
		return true
	case c >= 'A' && c <= 'Z':
		return c != 'I' && c != 'L' && c != 'O' && c != 'U'
	}
	return false
}

func checkID(id string) error {
	if !validID(id) {
		return fmt.Errorf("queue: invalid message ID %q: %w", id, ErrNotFound)
	}
	return nil
}
