// Package unixsock serves and dials haven's local control sockets (unix sockets of mode 0600 whose peers are checked with SO_PEERCRED) and hands open file descriptors, such as listening sockets, from one process to another over them.
package unixsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Listen opens a control socket at path, mode 0600, replacing a stale one
// (the caller owns path: it holds a lock or the path names its own pid).
// Its Accept hands out only connections whose peer runs as this process's
// effective user or as root (SO_PEERCRED), on top of the file mode; others
// are closed at once.
func Listen(path string) (net.Listener, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	return peerChecked{ln.(*net.UnixListener), os.Geteuid()}, nil
}

type peerChecked struct {
	*net.UnixListener
	uid int
}

func (p peerChecked) Accept() (net.Conn, error) {
	for {
		c, err := p.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if uid, err := PeerUID(c); err == nil && (uid == p.uid || uid == 0) {
			return c, nil
		}
		c.Close()
	}
}

// PeerUID is the user the process at the other end of c runs as.
func PeerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// HTTPClient returns an HTTP client that reaches the server on the control
// socket at path, whatever the URL's host (use http://local/...).
func HTTPClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
		},
	}
}

// maxFiles bounds one hand-over.
const maxFiles = 16

// SendFiles writes, on c, one message naming files (names[i] is files[i])
// and carrying their descriptors (SCM_RIGHTS): the receiver gets its own
// descriptors of the same open files (the same listening sockets, sharing
// one accept queue).
func SendFiles(c *net.UnixConn, names []string, files []*os.File) error {
	if len(names) != len(files) || len(files) > maxFiles {
		return fmt.Errorf("send files: %d names for %d files (at most %d)", len(names), len(files), maxFiles)
	}
	hdr, err := json.Marshal(names)
	if err != nil {
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	n, oobn, err := c.WriteMsgUnix(hdr, oob, nil)
	if err != nil {
		return fmt.Errorf("send files: %w", err)
	}
	if n != len(hdr) || oobn != len(oob) {
		return fmt.Errorf("send files: short write (%d of %d bytes, %d of %d control bytes)", n, len(hdr), oobn, len(oob))
	}
	return nil
}

// RecvFiles reads one message of SendFiles from c and returns the files by
// name. The caller owns (and closes) them.
func RecvFiles(c *net.UnixConn) (map[string]*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(maxFiles*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receive files: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("receive files: %w", err)
		}
		for _, m := range msgs {
			got, err := syscall.ParseUnixRights(&m)
			if err != nil {
				return nil, fmt.Errorf("receive files: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	closeAll := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		closeAll()
		return nil, errors.New("receive files: message truncated")
	}
	var names []string
	if err := json.Unmarshal(buf[:n], &names); err != nil || len(names) != len(fds) {
		closeAll()
		return nil, fmt.Errorf("receive files: %d descriptors for names %q (%v)", len(fds), buf[:n], err)
	}
	out := make(map[string]*os.File, len(names))
	for i, name := range names {
		syscall.CloseOnExec(fds[i])
		out[name] = os.NewFile(uintptr(fds[i]), name)
	}
	return out, nil
}

// ListenerFile returns a duplicate descriptor of a TCP or unix listener, to
// hand to another process; closing either leaves the other open.
func ListenerFile(ln net.Listener) (*os.File, error) {
	type filer interface{ File() (*os.File, error) }
	f, ok := ln.(filer)
	if !ok {
		return nil, fmt.Errorf("listener %T has no file descriptor", ln)
	}
	return f.File()
}
