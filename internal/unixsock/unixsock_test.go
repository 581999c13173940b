package unixsock

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSendFilesSharesTheListener(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	f, err := ListenerFile(tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	sent := make(chan struct{})
	defer func() { <-sent }()
	go func() {
		defer close(sent)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = SendFiles(c.(*net.UnixConn), []string{"https"}, []*os.File{f})
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	files, err := RecvFiles(c.(*net.UnixConn))
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := files["https"]
	if got == nil {
		t.Fatalf("no https file in %v", files)
	}
	inherited, err := net.FileListener(got)
	got.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The original stops accepting; the received one serves the same socket.
	tcp.Close()
	go http.Serve(inherited, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "same") }))
	defer inherited.Close()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + inherited.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "same" {
		t.Fatalf("body %q", b)
	}
}

func TestPeerCheckedAcceptsOwnUser(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	resp, err := HTTPClient(sock, 5*time.Second).Get("http://local/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	if uid, err := PeerUID(mustDial(t, sock)); err != nil || uid != os.Geteuid() {
		t.Fatalf("peer uid %d, %v", uid, err)
	}
}

func mustDial(t *testing.T, sock string) *net.UnixConn {
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}
