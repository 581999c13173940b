package peercred

import (
	"bufio"
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGuardBounds: identification runs concurrently but at most
// Concurrency at a time, never in Accept; one peer user gets at most
// PeerBurst identifications at once (the rest are refused without a scan);
// refusals are logged once per LogEvery per user with a count of the rest.
func TestGuardBounds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	var inFlight, maxInFlight, calls atomic.Int64
	release := make(chan struct{})
	now := time.Unix(1e9, 0)
	g := &Guard{Listener: ln, Concurrency: 3, PeerRate: 1, PeerBurst: 10, LogEvery: time.Hour,
		Now: func() time.Time { return now }, // frozen: no token comes back
		Log: slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil)),
		Allow: func(pid int) error {
			calls.Add(1)
			n := inFlight.Add(1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			<-release
			inFlight.Add(-1)
			return nil
		}}
	t.Cleanup(func() { g.Close() })
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	// 30 connections from this process's user: 10 tokens.
	var clients []net.Conn
	for range 30 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	refused := 0
	for _, c := range clients[10:] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.Contains(line, "403") {
			refused++
		}
	}
	if refused != 20 {
		t.Errorf("%d of the 20 connections beyond the burst were refused at once, want all", refused)
	}
	// Three identifications run, seven wait for a slot.
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := inFlight.Load(); got != 3 {
		t.Errorf("%d identifications in flight, want the Concurrency bound 3", got)
	}
	close(release)
	for range 10 {
		select {
		case c := <-accepted:
			c.Close()
		case <-time.After(10 * time.Second):
			t.Fatal("an identified connection was not handed out")
		}
	}
	if got := calls.Load(); got != 10 {
		t.Errorf("Allow was called %d times, want 10 (the burst): refused connections must cost no scan", got)
	}
	if got := maxInFlight.Load(); got > 3 {
		t.Errorf("%d identifications ran at once, bound 3", got)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "request refused"); n != 1 {
		t.Errorf("%d refusals logged, want 1 (sampled):\n%s", n, out)
	}
	for _, c := range clients {
		c.Close()
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestSocketUID finds the owner of both ends of a local connection, and
// refuses an address no local socket has.
func TestSocketUID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	uid, err := SocketUID(s.RemoteAddr().(*net.TCPAddr).AddrPort(), s.LocalAddr().(*net.TCPAddr).AddrPort())
	if err != nil || uid != os.Getuid() {
		t.Fatalf("SocketUID = %d, %v; want %d", uid, err, os.Getuid())
	}
	if _, err := SocketUID(netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")); err == nil {
		t.Error("SocketUID of a connection nobody has: no error")
	}
}
