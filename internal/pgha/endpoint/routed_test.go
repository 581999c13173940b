package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"testing"
)

// fakeRouter records what a Routed endpoint asks of the VPC's router. Its
// endpoint's virtual address is a real local server, so the host proxy
// has somewhere to forward to.
type fakeRouter struct {
	vip  netip.AddrPort
	fail bool

	mu    sync.Mutex
	calls []string
}

func (f *fakeRouter) Endpoint(name string) (netip.AddrPort, bool) { return f.vip, name == "db" }

func (f *fakeRouter) record(format string, a ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
	if f.fail {
		return errors.New("nft failed")
	}
	return nil
}

func (f *fakeRouter) SetEndpoint(_ context.Context, name string, t netip.AddrPort) error {
	return f.record("set %s %v", name, t)
}
func (f *fakeRouter) SwitchEndpoint(_ context.Context, name string, t netip.AddrPort) error {
	return f.record("switch %s %v", name, t)
}
func (f *fakeRouter) PauseEndpoint(_ context.Context, name string) error {
	return f.record("pause %s", name)
}

func (f *fakeRouter) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// TestRoutedFollowsThePrimary: an epoch or primary change switches the
// router's endpoint (cutting its connections) and closes the host proxy's
// sessions; resuming after a pause on the same target keeps the router's
// generation; no primary refuses on both paths.
func TestRoutedFollowsThePrimary(t *testing.T) {
	vip := netip.MustParseAddrPort(echoServer(t, "vip"))
	fr := &fakeRouter{vip: vip}
	r, err := NewRouted(RoutedConfig{Router: fr, Name: "db", Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	if got := fr.take(); !reflect.DeepEqual(got, []string{"switch db invalid AddrPort"}) {
		t.Errorf("start: router calls %q, want a switch to no target", got)
	}
	// No primary: the host's address refuses.
	if c, err := net.Dial("tcp", r.Addr()); err == nil {
		if _, err := roundTrip(c, "x\n"); err == nil {
			t.Error("with no primary, a connection through the host's address worked")
		}
		c.Close()
	}

	a := "198.18.20.2:5432"
	r.SetTarget(1, a)
	if got := fr.take(); !reflect.DeepEqual(got, []string{"switch db " + a}) {
		t.Errorf("first target: router calls %q, want switch to %s", got, a)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello\n"); err != nil || got != "vip:hello" {
		t.Fatalf("through the host's address: %q, %v; want the virtual address to answer", got, err)
	}

	r.Pause()
	if got := fr.take(); !reflect.DeepEqual(got, []string{"pause db"}) {
		t.Errorf("pause: router calls %q", got)
	}
	if _, err := roundTrip(c, "again\n"); err == nil {
		t.Error("a host session survived the pause")
	}
	r.SetTarget(1, a) // resume on the same primary: no new generation
	if got := fr.take(); !reflect.DeepEqual(got, []string{"set db " + a}) {
		t.Errorf("resume: router calls %q, want set (resume) to %s", got, a)
	}

	c2, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2, "one\n"); err != nil {
		t.Fatal(err)
	}
	b := "198.18.21.2:5432"
	r.SetTarget(2, b)
	if got := fr.take(); !reflect.DeepEqual(got, []string{"switch db " + b}) {
		t.Errorf("new epoch: router calls %q, want switch to %s", got, b)
	}
	if _, err := roundTrip(c2, "two\n"); err == nil {
		t.Error("a host session of epoch 1 survived the switch to epoch 2")
	}
	if e, tg := r.Target(); e != 2 || tg != b {
		t.Errorf("Target() = %d %s, want 2 %s", e, tg, b)
	}

	// A router that fails: the endpoint falls back to refusing, and says why.
	fr.fail = true
	r.SetTarget(3, a)
	if r.Err() == nil {
		t.Error("a failed switch left no error")
	}
	if _, tg := r.Target(); tg != "" {
		t.Errorf("after a failed switch the target is %q, want none", tg)
	}
}
