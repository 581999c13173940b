package zone

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

func TestNewDefaults(t *testing.T) {
	zs, err := New(Config{Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, az, cidr string }{
		{"a", "eu-west-1a", "127.0.1.0/24"},
		{"b", "eu-west-1b", "127.0.2.0/24"},
	}
	if len(zs) != len(want) {
		t.Fatalf("got %d zones, want %d", len(zs), len(want))
	}
	for i, w := range want {
		if zs[i].Name != w.name || zs[i].AZ != w.az || zs[i].CIDR.String() != w.cidr {
			t.Errorf("zone %d: got %s %s %s, want %s %s %s", i, zs[i].Name, zs[i].AZ, zs[i].CIDR, w.name, w.az, w.cidr)
		}
	}
}

func TestNewCustomBase(t *testing.T) {
	zs, err := New(Config{Names: []string{"x", "y", "z"}, Base: netip.MustParsePrefix("127.10.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := zs[2].CIDR.String(), "127.10.3.0/24"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := New(Config{Names: []string{"a", "a"}}); err == nil {
		t.Error("duplicate names: got nil error")
	}
	if _, err := New(Config{Base: netip.MustParsePrefix("127.0.0.0/24")}); err == nil {
		t.Error("narrow base: got nil error")
	}
}

func TestAllocateRelease(t *testing.T) {
	z, err := NewZone("a", "local-1a", netip.MustParsePrefix("127.0.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for i := range 253 {
		a, err := z.Allocate("i")
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if !z.CIDR.Contains(a) || a.As4()[3] < 2 || a.As4()[3] > 254 {
			t.Fatalf("allocate %d: got %s outside .2-.254", i, a)
		}
		if seen[a] {
			t.Fatalf("allocate %d: %s handed out twice", i, a)
		}
		seen[a] = true
	}
	if _, err := z.Allocate("x"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("got %v, want ErrExhausted", err)
	}
	a := netip.MustParseAddr("127.0.1.77")
	z.Release(a)
	got, err := z.Allocate("y")
	if err != nil || got != a {
		t.Fatalf("after release got %s, %v; want %s", got, err, a)
	}
	if o, _ := z.Owner(a); o != "y" {
		t.Errorf("owner got %q, want y", o)
	}
}

func TestAllocateRoundRobin(t *testing.T) {
	z, _ := NewZone("a", "local-1a", netip.MustParsePrefix("127.0.1.0/24"))
	a1, _ := z.Allocate("1")
	z.Release(a1)
	a2, _ := z.Allocate("2")
	if a1 == a2 {
		t.Errorf("released address %s reused immediately", a1)
	}
	if a1.String() != "127.0.1.2" {
		t.Errorf("first address got %s, want 127.0.1.2", a1)
	}
}

func TestReserve(t *testing.T) {
	z, _ := NewZone("a", "local-1a", netip.MustParsePrefix("127.0.1.0/24"))
	held := netip.MustParseAddr("127.0.1.9")
	if err := z.Reserve(held, "i-1"); err != nil {
		t.Fatal(err)
	}
	if err := z.Reserve(held, "i-1"); err != nil {
		t.Fatalf("reserve again for the same owner: %v", err)
	}
	if err := z.Reserve(held, "i-2"); err == nil {
		t.Fatal("reserved an address another owner holds")
	}
	if err := z.Reserve(netip.MustParseAddr("127.0.2.9"), "i-3"); err == nil {
		t.Fatal("reserved an address outside the zone")
	}
	// Allocation goes on after the adopted address, never handing it out.
	a, err := z.Allocate("i-4")
	if err != nil || a.String() != "127.0.1.10" {
		t.Fatalf("allocate after reserve: %s, %v; want 127.0.1.10", a, err)
	}
}

// TestBindZoneAddress checks that this host routes the zone ranges on loopback:
// a server bound to a zone address is reachable and not reachable via 127.0.0.1.
func TestBindZoneAddress(t *testing.T) {
	zs, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, z := range zs {
		a, err := z.Allocate("test")
		if err != nil {
			t.Fatal(err)
		}
		port, err := FreePort(a)
		if err != nil {
			t.Fatal(err)
		}
		l, err := z.Listen(ctx, a, port)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := l.Accept()
			if err == nil {
				io.WriteString(c, "hi")
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial %s: %v", l.Addr(), err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		l.Close()
		if string(b) != "hi" {
			t.Errorf("zone %s: got %q, want hi", z.Name, b)
		}
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			t.Errorf("zone %s: port reachable on 127.0.0.1, want bound to zone address only", z.Name)
		}
	}
}

func TestCmd(t *testing.T) {
	z, _ := NewZone("a", "local-1a", netip.MustParsePrefix("127.0.1.0/24"))
	out, err := z.Cmd(context.Background(), "echo", "ok").Output()
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}
