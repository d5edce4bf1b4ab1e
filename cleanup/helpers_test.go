package cleanup

import (
	"bufio"
	"io"
	"net/netip"
	"strings"
	"testing/iotest"
)

func bufioOneByte(s string) *bufio.Reader {
	var r io.Reader = iotest.OneByteReader(strings.NewReader(s))
	return bufio.NewReaderSize(r, 16)
}

func netip0() netip.Addr { return netip.Addr{} }
