package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

type handler struct{ got []Request }

func (h *handler) Handle(_ context.Context, req Request) (int, error) {
	h.got = append(h.got, req)
	if req.Cmd == "broken" {
		return 0, errors.New("no such command: broken")
	}
	return len(req.IDs), nil
}

func TestCallServe(t *testing.T) {
	dir := t.TempDir()
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(filepath.Join(dir, SocketName))
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v (%v), want 0660: only root and the relayd group steer the queue", fi.Mode(), err)
	}
	h := &handler{}
	go Serve(l, h, slog.New(slog.NewTextHandler(io.Discard, nil)))

	resp, err := Call(dir, Request{Cmd: "hold", IDs: []string{"A", "B"}})
	if err != nil || !resp.OK || resp.Count != 2 {
		t.Fatalf("hold: %+v, %v", resp, err)
	}
	if _, err := Call(dir, Request{Cmd: "broken"}); err == nil || err.Error() != "no such command: broken" {
		t.Errorf("a handler error must reach the caller: %v", err)
	}
	if len(h.got) != 2 || h.got[0].Cmd != "hold" || len(h.got[0].IDs) != 2 {
		t.Errorf("handler saw %+v", h.got)
	}
}

func TestCallWithoutDaemon(t *testing.T) {
	_, err := Call(t.TempDir(), Request{Cmd: "flush"})
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no socket: %v, want ErrNoDaemon (exit 75 in the CLI)", err)
	}
}
