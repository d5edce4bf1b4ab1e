package cleanup

import (
	"bufio"
	"io"
	"strings"
	"testing/iotest"
)

func bufioOneByte(s string) *bufio.Reader {
	var r io.Reader = iotest.OneByteReader(strings.NewReader(s))
	return bufio.NewReaderSize(r, 16)
}
