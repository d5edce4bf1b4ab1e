// Package control is the Unix-socket protocol between the relayd command
// line (relayd queue ..., relayd reload) and the running daemon.
//
// The protocol is one JSON request line and one JSON response line per
// connection. The socket lives in the state directory with mode 0660, so
// only root and the relayd group can steer the queue. Every read and write
// has a deadline.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"
)

// SocketName is the socket's file name inside the state directory.
const SocketName = "control.sock"

// Request is one command.
type Request struct {
	Cmd string   `json:"cmd"` // flush | delete | hold | release | reload
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// Response answers a Request.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Count int    `json:"count,omitempty"` // messages affected
}

// Handler executes commands in the daemon.
type Handler interface {
	Handle(ctx context.Context, req Request) (count int, err error)
}

// ErrNoDaemon means nothing listens on the socket.
var ErrNoDaemon = errors.New("relayd is not running (no control socket)")

const timeout = 30 * time.Second

// Listen creates the socket in dir, mode 0660 from its first moment: it is
// bound inside a fresh private directory (mode 0700, so whatever mode the
// umask gives the new socket, nobody else can reach it there), chmodded,
// and renamed into place. (Changing the umask instead would change it for
// the whole process, under every goroutine creating files meanwhile.)
func Listen(dir string) (net.Listener, error) {
	path := filepath.Join(dir, SocketName)
	priv, err := os.MkdirTemp(dir, ".c") // short: a socket path has at most 107 bytes
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // removed under its final name by Close
	if err := os.Chmod(tmp, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &listener{UnixListener: ul, path: path}, nil
}

// listener removes the socket file when it closes.
type listener struct {
	*net.UnixListener
	path string
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}

// Serve answers requests on l until it is closed.
func Serve(l net.Listener, h Handler, log *slog.Logger) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serveConn(c, h, log)
	}
}

func serveConn(c net.Conn, h Handler, log *slog.Logger) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var req Request
	line, err := bufio.NewReaderSize(c, 64<<10).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	resp := Response{OK: true}
	if err != nil {
		resp = Response{Error: "bad request: " + err.Error()}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		n, err := h.Handle(ctx, req)
		cancel()
		resp.Count = n
		if err != nil {
			resp = Response{Error: err.Error(), Count: n}
		}
		log.Info("control command", "cmd", req.Cmd, "ids", len(req.IDs), "all", req.All, "ok", resp.OK)
	}
	json.NewEncoder(c).Encode(resp)
}

// Call sends req to the daemon whose state directory is dir.
func Call(dir string, req Request) (Response, error) {
	c, err := net.DialTimeout("unix", filepath.Join(dir, SocketName), 5*time.Second)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && (errors.Is(err, os.ErrNotExist) || isRefused(err)) {
			return Response{}, fmt.Errorf("%w: %w", ErrNoDaemon, err)
		}
		return Response{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, err
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
