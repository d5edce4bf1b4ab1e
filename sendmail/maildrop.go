package sendmail

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"relayd/internal/sysexits"
)

// DropMagic is the first line of every maildrop file.
const DropMagic = "RELAYD-MAILDROP 1"

// Limits ReadDrop enforces on the (untrusted) envelope line.
const (
	maxDropEnvelope = 1 << 20
	maxDropRcpts    = 10000
	maxAddrLen      = 998 // a line's worth (RFC 5322 section 2.1.1)
)

// Envelope is what the shim tells the daemon besides the message.
type Envelope struct {
	From   string   `json:"from"`             // "" is the null sender
	Rcpts  []string `json:"rcpts"`            // at least one
	Notify string   `json:"notify,omitempty"` // RFC 3461 NOTIFY for every recipient: "NEVER" or e.g. "FAILURE,DELAY"
	Ret    string   `json:"ret,omitempty"`    // RFC 3461 RET: "FULL" | "HDRS" | ""
	EnvID  string   `json:"envid,omitempty"`  // RFC 3461 ENVID (xtext-decoded)
	// UID is the submitting uid as the shim saw it, recorded by WriteDrop.
	// Informational only: the daemon must use the maildrop file's owner.
	UID int `json:"uid"`
	// Submitted is when WriteDrop stored the message.
	Submitted time.Time `json:"submitted,omitzero"`
}

// randomHex returns 32 hex digits from crypto/rand: maildrop names must be
// unguessable, since the directory is writable by everyone.
func randomHex() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand contract since Go 1.24)
	return hex.EncodeToString(b[:])
}

// WriteDrop stores one message durably in the maildrop directory dir and
// returns the final file name (relative to dir). See stageDrop and commit.
// On any error nothing is left behind.
func WriteDrop(dir string, env Envelope, msg io.Reader) (name string, err error) {
	sd, _, err := stageDrop(dir, env, msg)
	if err != nil {
		return "", err
	}
	defer sd.discard()
	return sd.commit()
}

// stagedDrop is a maildrop file written but not committed: a dot file the
// pickup ignores, mode 0600, not yet fsynced. The sendmail command stages
// every message before it tries the daemon's socket, so that whatever the
// socket does (refuses, 421, 4xx, times out) the message can still be
// committed to the maildrop: a local submission is never lost.
type stagedDrop struct {
	f      *os.File
	dir    string
	tmp    string
	env    Envelope
	msgOff int64 // where the message starts
	size   int64
	done   bool
}

// stageDrop writes the message into a new ".tmp.<random>" file in dir
// (O_EXCL). created reports whether the file could be created at all (when
// not, nothing of msg was read). On error nothing is left behind.
func stageDrop(dir string, env Envelope, msg io.Reader) (sd *stagedDrop, created bool, err error) {
	if err := env.validate(); err != nil {
		return nil, false, exitf(sysexits.Software, err, "bad envelope")
	}
	if env.Submitted.IsZero() {
		env.Submitted = time.Now().UTC()
	}
	env.UID = os.Getuid()
	meta, err := json.Marshal(env)
	if err != nil {
		return nil, false, exitf(sysexits.Software, err, "encoding envelope")
	}
	tmp := filepath.Join(dir, ".tmp."+randomHex())
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, exitf(sysexits.TempFail, err, "cannot create maildrop file")
	}
	staged := &stagedDrop{f: f, dir: dir, tmp: tmp, env: env}
	ok := false
	defer func() {
		if !ok {
			staged.discard()
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	w.WriteString(DropMagic + "\n")
	w.Write(meta)
	w.WriteByte('\n')
	staged.msgOff = int64(len(DropMagic) + 1 + len(meta) + 1)
	n, err := io.Copy(w, msg)
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			return nil, true, ee // e.g. message too big, bad input: not a write failure
		}
		return nil, true, exitf(sysexits.TempFail, err, "writing maildrop file")
	}
	if err := w.Flush(); err != nil {
		return nil, true, exitf(sysexits.TempFail, err, "writing maildrop file")
	}
	staged.size = staged.msgOff + n
	ok = true
	return staged, true, nil
}

// message reads the staged message back (for the daemon's socket).
func (sd *stagedDrop) message() io.Reader {
	return io.NewSectionReader(sd.f, sd.msgOff, sd.size-sd.msgOff)
}

// commit makes the staged file a maildrop entry: mode 0644 by fchmod
// (umask-proof: the daemon may read it as another user), fsynced, renamed
// to "<16 hex nanoseconds><32 hex random>" (names sort by time; the pickup
// ignores dot files), and the rename is made durable with syncfs(2): a
// non-root user cannot open the mode-1733 directory to fsync it.
func (sd *stagedDrop) commit() (name string, err error) {
	if err := sd.f.Chmod(0o644); err != nil {
		return "", exitf(sysexits.TempFail, err, "maildrop chmod")
	}
	if err := sd.f.Sync(); err != nil {
		return "", exitf(sysexits.TempFail, err, "fsync maildrop file")
	}
	name = fmt.Sprintf("%016x%s", sd.env.Submitted.UnixNano(), randomHex())
	if err := os.Rename(sd.tmp, filepath.Join(sd.dir, name)); err != nil {
		return "", exitf(sysexits.TempFail, err, "renaming maildrop file")
	}
	sd.done = true
	// The rename is the commit; syncfs flushes the directory entry too.
	serr := unix.Syncfs(int(sd.f.Fd()))
	cerr := sd.f.Close()
	if err := errors.Join(serr, cerr); err != nil {
		// The file is in place but maybe not durable: report a temporary
		// failure and remove it, so the caller's retry cannot duplicate it.
		os.Remove(filepath.Join(sd.dir, name))
		return "", exitf(sysexits.TempFail, err, "syncing maildrop")
	}
	return name, nil
}

// discard removes a staged file that was not committed; a no-op after
// commit.
func (sd *stagedDrop) discard() {
	if sd.done {
		return
	}
	sd.done = true
	sd.f.Close()
	os.Remove(sd.tmp)
}

// ReadDrop parses a maildrop file: the magic line, the JSON envelope line,
// and returns a reader positioned at the message. It is strict (unknown
// JSON fields, missing recipients, line breaks in addresses are errors)
// because anyone on the host can write a maildrop file.
func ReadDrop(r io.Reader) (Envelope, io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := readBoundedLine(br, len(DropMagic)+1)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop magic: %w", err)
	}
	if string(magic) != DropMagic {
		return Envelope{}, nil, errors.New("maildrop: not a RELAYD-MAILDROP 1 file")
	}
	line, err := readBoundedLine(br, maxDropEnvelope)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop envelope: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var env Envelope
	if err := dec.Decode(&env); err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop envelope: %w", err)
	}
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) > 0 {
		return Envelope{}, nil, errors.New("maildrop envelope: trailing data")
	}
	if err := env.validate(); err != nil {
		return Envelope{}, nil, fmt.Errorf("maildrop envelope: %w", err)
	}
	return env, br, nil
}

// readBoundedLine reads one LF-terminated line of at most max bytes
// (without the LF).
func readBoundedLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		b, err := br.ReadSlice('\n')
		line = append(line, b...)
		if len(line) > max+1 {
			return nil, errors.New("line too long")
		}
		if err == nil {
			return line[:len(line)-1], nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

// validate checks an envelope for what would break or inject into SMTP.
func (e *Envelope) validate() error {
	if err := checkAddr("sender", e.From); err != nil {
		return err
	}
	if len(e.Rcpts) == 0 {
		return errors.New("no recipients")
	}
	if len(e.Rcpts) > maxDropRcpts {
		return fmt.Errorf("too many recipients (%d)", len(e.Rcpts))
	}
	for _, r := range e.Rcpts {
		if r == "" {
			return errors.New("empty recipient")
		}
		if err := checkAddr("recipient", r); err != nil {
			return err
		}
	}
	if e.Notify != "" {
		if _, err := parseNotify(e.Notify); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	switch e.Ret {
	case "", "FULL", "HDRS":
	default:
		return fmt.Errorf("ret %q: want FULL or HDRS", e.Ret)
	}
	// RFC 3461 section 4.4: ENVID is printable ASCII, at most 100 chars.
	if len(e.EnvID) > 100 {
		return errors.New("envid longer than 100 characters")
	}
	for _, c := range []byte(e.EnvID) {
		if c < 33 || c > 126 {
			return errors.New("envid is not printable ASCII")
		}
	}
	return nil
}

func checkAddr(what, a string) error {
	if len(a) > maxAddrLen {
		return fmt.Errorf("%s too long", what)
	}
	if strings.ContainsAny(a, "\r\n\x00<> \t") {
		return fmt.Errorf("%s %q contains a forbidden character", what, a)
	}
	return nil
}
