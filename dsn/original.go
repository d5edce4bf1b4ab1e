package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"relayd/internal/hdrscan"
)

const (
	// DefaultMaxFull is the largest original returned whole for RET=FULL
	// when Params.MaxFull is 0.
	DefaultMaxFull = 1 << 20
	// maxHeaderBlock caps the header block returned as text/rfc822-headers.
	maxHeaderBlock = 256 << 10
)

// attachment is the third part of the report, if any.
type attachment struct {
	contentType string // "message/rfc822" or "text/rfc822-headers"
	description string
	body        []byte // CRLF lines, ending in CRLF
	eightBit    bool
	// note tells the human what was (or was not) attached.
	note string
}

// readOriginal builds the third part. It never fails: when the original
// cannot be read, the returned attachment has a nil body and a note saying
// so, because a notice must go out regardless.
func readOriginal(n Notice, maxFull int64) attachment {
	if maxFull == 0 {
		maxFull = DefaultMaxFull
	}
	// RFC 3461 §4.3: RET=FULL asks for the content in "failed" notices;
	// delay and relay notices carry the headers only.
	full := strings.EqualFold(n.Ret, "FULL") && n.Kind == Failed
	tooBig := full && (maxFull < 0 || n.Size > maxFull)
	if tooBig {
		full = false
	}
	if n.Open == nil {
		return attachment{note: "The original message could not be read, so it is not attached."}
	}
	rc, err := n.Open()
	if err != nil {
		return attachment{note: "The original message could not be read, so it is not attached."}
	}
	defer rc.Close()

	limit := int64(maxHeaderBlock)
	if full {
		limit = maxFull
	}
	data, truncated, err := readCapped(rc, limit)
	if err != nil {
		return attachment{note: "The original message could not be read, so it is not attached."}
	}
	if full && truncated {
		// Size understated the message; fall back to headers.
		full, tooBig = false, true
		if len(data) > maxHeaderBlock {
			data = data[:maxHeaderBlock]
		}
	}
	if full {
		body := crlf(data)
		return attachment{
			contentType: "message/rfc822",
			description: "Undelivered Message",
			body:        body,
			eightBit:    !isASCII(string(body)),
			note:        "The original message is attached.",
		}
	}
	hdr := crlf(headerBlock(data, truncated))
	desc := "Message Headers"
	if n.Kind == Failed {
		desc = "Undelivered Message Headers"
	}
	note := "The headers of the original message are attached."
	if tooBig {
		note = fmt.Sprintf("The original message is too large to return in full (%d bytes); its headers are attached.", n.Size)
	}
	if len(hdr) == 0 {
		return attachment{note: "The original message has no headers to attach."}
	}
	return attachment{
		contentType: "text/rfc822-headers",
		description: desc,
		body:        hdr,
		eightBit:    !isASCII(string(hdr)),
		note:        note,
	}
}

// readCapped reads at most limit bytes of r; truncated reports that more
// followed. EOF is not an error.
func readCapped(r io.Reader, limit int64) (data []byte, truncated bool, err error) {
	var b bytes.Buffer
	_, err = io.Copy(&b, io.LimitReader(r, limit+1))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("dsn: reading original: %w", err)
	}
	data = b.Bytes()
	if int64(len(data)) > limit {
		return data[:limit], true, nil
	}
	return data, false, nil
}

// headerBlock returns the header section of msg (RFC 5322 §2.1): its
// fields, as the intake's scanner finds them (internal/hdrscan), without the
// empty line or the first body line after them. When the block was cut off
// by the read cap, it ends at the last complete line.
func headerBlock(msg []byte, truncated bool) []byte {
	end := 0
	body := hdrscan.Fields(msg, func(_, raw []byte) bool {
		end += len(raw) // the fields tile the header from its start
		return true
	})
	if body == len(msg) && truncated {
		end = bytes.LastIndexByte(msg[:end], '\n') + 1
	}
	return msg[:end]
}

// crlf normalises bare LF and bare CR to CRLF and makes sure the result
// ends with CRLF (unless it is empty), so the part boundary that follows
// starts on its own line (RFC 2046 §5.1.1).
func crlf(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	out := make([]byte, 0, len(b)+len(b)/50+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}
