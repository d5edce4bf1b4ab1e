package cleanup

import (
	"errors"
	"strings"
	"time"

	"relayd/internal/reencode"
)

// reencode re-encodes the message in draft, whose body has a line over 998
// octets (or 8-bit content, with sevenBit, for a smarthost without
// 8BITMIME), into a new draft with its own queue ID, prefix and signature
// (RFC 5322 §2.1.1; RFC 2045 §6.7, §6.8; RFC 6152 §3; see
// internal/reencode). It returns a nil draft when there was nothing to
// re-encode after all (the long line or the 8-bit octets are in the header,
// which is passed on as it is). The caller aborts the draft that is not
// kept and closes the output. msgID is the Message-ID to complete with;
// "" makes one from the new draft's ID.
func (c *Config) reencode(sub *Submission, h *header, draft Draft, domain string, msgID *string, now time.Time, long, sevenBit bool) (Draft, []byte, *output, error) {
	r, size, err := draft.Contents()
	if err != nil {
		return nil, nil, nil, storageError(err)
	}
	d2, err := c.Spool.Create()
	if err != nil {
		return nil, nil, nil, storageError(err)
	}
	id := d2.ID()
	if *msgID == "" {
		*msgID = c.messageID(id)
	}
	prefix := c.prefix(sub, h, id, *msgID, now)
	out, err := c.startOutput(d2, domain, prefix, id)
	if err != nil {
		return d2, nil, out, err
	}
	n, err := reencode.FixWith(out.sink, r, size, reencode.Options{SevenBit: sevenBit})
	switch {
	case errors.Is(err, reencode.ErrUnfixable):
		return d2, nil, out, ErrLineTooLong
	case err != nil: // the spool or the signer: 451/452, may succeed later
		return d2, nil, out, storageError(err)
	case n == 0:
		d2.Abort()
		out.close()
		return nil, nil, nil, nil
	}
	var fixes []string
	if long {
		fixes = append(fixes, "long-lines")
	}
	if sevenBit {
		fixes = append(fixes, "8bitmime")
	}
	fixed := strings.Join(fixes, ",")
	c.Logger.Info("message re-encoded", "id", id, "fixed", fixed, "parts", n, "draft", draft.ID())
	d2.SetFixed(fixed) // on its status=queued line
	return d2, prefix, out, nil
}
