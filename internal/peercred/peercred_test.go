package peercred

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/proc"
)

// TestPeerGuardIdentifiesProcessGroups connects to a guarded listener from
// two real processes in different process groups: only the allowed group gets in.
func TestPeerGuardIdentifiesProcessGroups(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	allowed := make(chan int, 1)
	var allowGroup atomic.Int64 // set after the accept loop starts
	g := &Guard{Listener: ln, Log: slog.New(slog.DiscardHandler), Allow: func(pid int) error {
		st, err := proc.ReadStat(pid)
		if err != nil {
			return err
		}
		if int64(st.PGID) != allowGroup.Load() {
			return os.ErrPermission
		}
		allowed <- pid
		return nil
	}}
	t.Cleanup(func() { g.Close() })
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
			c.Close()
		}
	}()
	curl := func() (*exec.Cmd, *strings.Builder) {
		c := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+ln.Addr().String()+"/")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out strings.Builder
		c.Stdout = &out
		return c, &out
	}
	// The allowed group is led by a sleeper; the first curl joins it, as a
	// process an instance spawns would.
	c1, out1 := curl()
	leader := exec.Command("sleep", "30")
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Process.Kill(); _ = leader.Wait() })
	allowGroup.Store(int64(leader.Process.Pid))
	c1.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: leader.Process.Pid}
	if err := c1.Run(); err != nil {
		t.Fatal(err)
	}
	if out1.String() != "200" {
		t.Fatalf("curl in the allowed group got %q, want 200", out1.String())
	}
	select {
	case pid := <-allowed:
		if pid == os.Getpid() {
			t.Fatal("the peer was attributed to the test process")
		}
	case <-time.After(time.Second):
		t.Fatal("allow was not called")
	}
	c2, out2 := curl() // its own group
	if err := c2.Run(); err != nil {
		t.Fatal(err)
	}
	if out2.String() != "403" {
		t.Fatalf("curl in another group got %q, want 403", out2.String())
	}
	// And a connection from this process is attributed to it, so refused.
	pids, err := PeerPIDsOfDial(t, ln.Addr().String())
	if err != nil || len(pids) != 1 || pids[0] != os.Getpid() {
		t.Fatalf("PeerPIDs of our own connection = %v, %v; want [%d]", pids, err, os.Getpid())
	}
}

// PeerPIDsOfDial dials addr from this process and resolves the connection's owner.
func PeerPIDsOfDial(t *testing.T, addr string) ([]int, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	remote := netip.MustParseAddrPort(addr)
	return PeerPIDs(local, remote)
}
