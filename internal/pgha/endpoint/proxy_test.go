package endpoint

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with "<name>:<line>".
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+":"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(Config{Listen: "127.0.0.1:0", PauseTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

func roundTrip(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// closedSoon reports whether the peer closed c within a second.
func closedSoon(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestForwardsToCurrentPrimaryAndClosesOnEpochChange(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	p := startProxy(t)
	p.SetTarget(1, a)

	c1, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if got, err := roundTrip(c1, "x"); err != nil || got != "a:x" {
		t.Fatalf("epoch 1 reply = %q, %v; want a:x", got, err)
	}
	if got := p.Sessions(); got != 1 {
		t.Errorf("sessions = %d, want 1", got)
	}

	p.SetTarget(2, b)
	if !closedSoon(c1) {
		t.Error("client connection of epoch 1 still open after epoch 2")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, "y"); err != nil || got != "b:y" {
		t.Fatalf("epoch 2 reply = %q, %v; want b:y", got, err)
	}
	// Same epoch and target again: connections are kept.
	p.SetTarget(2, b)
	if got, err := roundTrip(c2, "z"); err != nil || got != "b:z" {
		t.Errorf("after idempotent SetTarget reply = %q, %v; want b:z", got, err)
	}
}

func TestNoPrimaryRefusesAtOnce(t *testing.T) {
	p := startProxy(t)
	a := echoServer(t, "a")
	p.SetTarget(1, a)
	c1, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	p.SetTarget(1, "") // primary fenced, none promoted yet
	if !closedSoon(c1) {
		t.Error("connection to the fenced primary still open")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if !closedSoon(c2) {
		t.Error("new connection without a primary was not closed at once")
	}
}

func TestPauseHoldsNewConnectionsUntilRepoint(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	p := startProxy(t)
	p.SetTarget(1, a)
	c1, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	p.Pause()
	if !closedSoon(c1) {
		t.Error("existing connection kept open while paused")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	type reply struct {
		s   string
		err error
	}
	got := make(chan reply, 1)
	go func() { s, err := roundTrip(c2, "held"); got <- reply{s, err} }()
	select {
	case r := <-got:
		t.Fatalf("paused proxy answered %q, %v before repoint", r.s, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	p.SetTarget(2, b)
	r := <-got
	if r.err != nil || r.s != "b:held" {
		t.Errorf("held connection reply = %q, %v; want b:held", r.s, r.err)
	}
}

// TestProxyMovesItsAddress: AddAddr serves a second address without
// cutting anything; RemoveAddr of the first closes it and every session
// (the clients reconnect), and the new address keeps forwarding.
func TestProxyMovesItsAddress(t *testing.T) {
	a := echoServer(t, "a")
	p := startProxy(t)
	p.SetTarget(1, a)
	oldAddr := p.Addr()
	c1, err := net.Dial("tcp", oldAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	if err := p.AddAddr(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	newAddr := p.Addr()
	if newAddr == oldAddr {
		t.Fatalf("Addr() = %s after AddAddr, want the new address", newAddr)
	}
	if got, err := roundTrip(c1, "still"); err != nil || got != "a:still" {
		t.Errorf("old address's session after AddAddr: %q, %v; want a:still", got, err)
	}
	if err := p.RemoveAddr(context.Background(), oldAddr); err != nil {
		t.Fatal(err)
	}
	if !closedSoon(c1) {
		t.Error("old address's session still open after RemoveAddr")
	}
	if c, err := net.DialTimeout("tcp", oldAddr, time.Second); err == nil {
		c.Close()
		t.Error("the removed address still accepts connections")
	}
	c2, err := net.Dial("tcp", newAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, "y"); err != nil || got != "a:y" {
		t.Errorf("new address: %q, %v; want a:y", got, err)
	}
	if err := p.RemoveAddr(context.Background(), newAddr); err == nil {
		t.Error("RemoveAddr of the only address succeeded")
	}
}
