package endpoint

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runProxyProcess is the test binary acting as `haven endpoint serve`.
func runProxyProcess() int {
	fs := flag.NewFlagSet("endpoint serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	fd := fs.Int("listener-fd", 3, "")
	count := fs.Int("listeners", 1, "")
	epoch := fs.Uint64("epoch", 0, "")
	target := fs.String("target", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var more []*os.File
	for i := 1; i < *count; i++ {
		more = append(more, os.NewFile(uintptr(*fd+i), "listener"))
	}
	if err := ServeProcess(ctx, ServeOptions{Dir: *dir, Listener: os.NewFile(uintptr(*fd), "listener"), More: more, Epoch: *epoch, Target: *target,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func newTestProxyProcess(t *testing.T, dir, listen string) *ProxyProcess {
	t.Helper()
	pp, err := NewProcess(ProcessConfig{Dir: dir, Listen: listen, Command: []string{os.Args[0]}, Env: []string{"HAVEN_EP_TEST_SERVE=1"},
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return pp
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestProxyProcessOutlivesItsDaemon: connections through the proxy process
// survive the daemon side going away; the next one adopts the process and
// its target, cutting nothing, until a new epoch; a killed process is
// replaced on the same socket.
func TestProxyProcessOutlivesItsDaemon(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a, b := echoServer(t, "a"), echoServer(t, "b")
	pp1 := newTestProxyProcess(t, dir, listen)
	ctx := context.Background()
	if err := pp1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pp1.SetTarget(1, a)
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "1"); err != nil || got != "a:1" {
		t.Fatalf("through the process: %q, %v", got, err)
	}
	pid := pp1.PID()
	pp1.Detach() // the daemon crashes
	if got, err := roundTrip(c, "2"); err != nil || got != "a:2" {
		t.Fatalf("after the daemon went: %q, %v", got, err)
	}

	pp2 := newTestProxyProcess(t, dir, listen)
	if err := pp2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pp2.Stop(context.Background()) })
	if pp2.Adopted() != pid {
		t.Fatalf("adopted %d, want %d", pp2.Adopted(), pid)
	}
	pp2.SetTarget(1, a) // the controller's repoint after its own adoption
	if got, err := roundTrip(c, "3"); err != nil || got != "a:3" {
		t.Fatalf("after adoption: %q, %v; the connection must survive", got, err)
	}
	pp2.SetTarget(2, b)
	if _, err := roundTrip(c, "4"); err == nil {
		t.Fatal("a connection of the old epoch survived a new epoch")
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		c2, err := net.Dial("tcp", listen)
		if err == nil {
			var got string
			got, err = roundTrip(c2, "5")
			c2.Close()
			if err == nil && got == "b:5" && pp2.PID() != pid {
				break
			}
			last = fmt.Sprintf("%q, %v", got, err)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proxy process serves the endpoint 10s after the kill (pid %d; last: %s)", pp2.PID(), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(pp2.Addr(), "127.0.0.1:") {
		t.Fatalf("addr %q", pp2.Addr())
	}

	// The endpoint moves: a second address, served by the same process
	// with no connection cut; a process started after a kill serves both;
	// so does one a third daemon adopts; then the old address goes.
	c3, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, "6"); err != nil || got != "b:6" {
		t.Fatalf("before the move: %q, %v", got, err)
	}
	moved := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if err := pp2.AddAddr(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(c3, "7"); err != nil || got != "b:7" {
		t.Fatalf("after AddAddr: %q, %v; no connection may be cut", got, err)
	}
	if pp2.Addr() != moved {
		t.Fatalf("addr %q while moving, want the newest %s", pp2.Addr(), moved)
	}
	dialBoth := func(tag string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, a := range []string{listen, moved} {
			for {
				c, err := net.Dial("tcp", a)
				var got string
				if err == nil {
					got, err = roundTrip(c, tag)
					c.Close()
				}
				if err == nil && got == "b:"+tag {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s through %s: %q, %v", tag, a, got, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	dialBoth("8")
	old := pp2.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for pp2.PID() == old || pp2.PID() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	dialBoth("9")
	pid = pp2.PID()
	pp2.Detach()
	pp3 := newTestProxyProcess(t, dir, listen)
	if err := pp3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pp3.Stop(context.Background()) })
	if pp3.Adopted() != pid || pp3.Addr() != moved {
		t.Fatalf("third daemon: adopted %d serving newest %s; want %d and %s", pp3.Adopted(), pp3.Addr(), pid, moved)
	}
	dialBoth("10")
	if err := pp3.RemoveAddr(ctx, listen); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", listen); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after RemoveAddr", listen)
	}
	c4, err := net.Dial("tcp", moved)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if got, err := roundTrip(c4, "11"); err != nil || got != "b:11" {
		t.Fatalf("through the moved address: %q, %v", got, err)
	}
}
