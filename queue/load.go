package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// loadMessage reads the current meta of message id in the spool dir:
// meta/ID.json if the message's state changed since it was committed, else
// the trailer of msg/ID. It checks the meta against the body. A message
// that does not exist, or is being removed (meta/ID.gone), is ErrNotFound;
// any other error means the message is broken (recovery quarantines it).
//
// The lookup order makes concurrent removal safe: a removal renames
// meta/ID.json to meta/ID.gone before it unlinks msg/ID, and unlinks the
// tombstone last, so a reader that missed meta/ID.json either sees the
// tombstone or finds msg/ID gone; it never mistakes a removed message's
// trailer (its state at commit) for the current state.
func loadMessage(dir, id string) (*Meta, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	metaPath := filepath.Join(dir, "meta", id+".json")
	bodyPath := filepath.Join(dir, "msg", id)
	notFound := fmt.Errorf("queue: %s: %w", id, ErrNotFound)
	b, err := readSpoolFile(metaPath)
	switch {
	case err == nil:
		m, err := decodeMeta(b, metaPath)
		if err != nil {
			return nil, err
		}
		if err := checkMeta(m, id); err != nil {
			return nil, err
		}
		size, err := statSpoolFile(bodyPath)
		if err != nil {
			return nil, fmt.Errorf("queue: meta without its body: %w", err)
		}
		// Bodies of the old layout have no trailer; with one, the file is
		// longer than the body. Either way it must hold the whole body.
		if want := m.Size - int64(len(m.Prefix)); size < want {
			return nil, fmt.Errorf("queue: body has %d bytes, meta says %d", size, want)
		}
		return m, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("queue: read meta %s: %w", id, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "meta", id+".gone")); err == nil {
		return nil, notFound
	}
	f, size, err := OpenSpoolFile(bodyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("queue: open message %s: %w", id, err)
	}
	defer f.Close()
	raw, body, err := readTrailer(f, size)
	if err != nil {
		return nil, fmt.Errorf("queue: %s: %w", bodyPath, err)
	}
	m, err := decodeMeta(raw, bodyPath+" (trailer)")
	if err != nil {
		return nil, err
	}
	if err := checkMeta(m, id); err != nil {
		return nil, err
	}
	if want := m.Size - int64(len(m.Prefix)); body != want {
		return nil, fmt.Errorf("queue: body has %d bytes, meta says %d", body, want)
	}
	return m, nil
}

func checkMeta(m *Meta, id string) error {
	if m.ID != id {
		return fmt.Errorf("queue: meta of %s says ID %q", id, m.ID)
	}
	if m.Size < int64(len(m.Prefix)) {
		return fmt.Errorf("queue: meta of %s: size %d is less than its %d-byte prefix", id, m.Size, len(m.Prefix))
	}
	return nil
}

// openMessage opens msg/ID and returns prefix + body, stopping where the
// body ends (the meta trailer follows it).
func openMessage(path string, prefix []byte, bodyLen int64) (io.ReadCloser, error) {
	f, _, err := OpenSpoolFile(path)
	if err != nil {
		return nil, fmt.Errorf("queue: open body: %w", err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(prefix), &exactReader{r: f, n: bodyLen}), f}, nil
}

// exactReader yields exactly n bytes of r: a file that ends early is
// io.ErrUnexpectedEOF, never a silently short message (a delivery would
// then send it truncated).
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if e.n <= 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// forEachName calls fn for each name in dir, reading the directory in
// chunks so memory does not grow with the queue.
func forEachName(dir string, fn func(name string) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("queue: open %s: %w", dir, err)
	}
	defer d.Close()
	for {
		ents, rerr := d.ReadDir(256)
		for _, e := range ents {
			if err := fn(e.Name()); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("queue: read %s: %w", dir, rerr)
		}
	}
}

// listMessages calls fn with the current meta of every message in dir's
// msg/, one at a time. Messages removed meanwhile and broken ones (which
// the next Open quarantines) are skipped. It stops at fn's first error.
func listMessages(dir string, fn func(*Meta) error) error {
	return forEachName(filepath.Join(dir, "msg"), func(name string) error {
		if !validID(name) {
			return nil
		}
		m, err := loadMessage(dir, name)
		if err != nil {
			return nil
		}
		return fn(m)
	})
}

// FileID returns the ID in the meta trailer of an open message file, for a
// reader outside the daemon (relayd queue show): the daemon recycles the
// files of delivered messages (spare.go), so such a reader checks, before
// and after reading, that the file still holds the message it opened.
func FileID(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	raw, _, err := readTrailer(f, st.Size())
	if err != nil {
		return "", err
	}
	m, err := decodeMeta(raw, f.Name()+" (trailer)")
	if err != nil {
		return "", err
	}
	return m.ID, nil
}
