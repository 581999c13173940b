package endpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// backend is a TCP echo server on a zone-like address that counts the
// lines it receives and can close every connection (a fenced server).
type backend struct {
	name string
	addr string
	mu   sync.Mutex
	recv int
	conn map[net.Conn]struct{}
}

func startBackend(t *testing.T, name, ip string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), conn: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); b.closeAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conn[c] = struct{}{}
			b.mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					b.mu.Lock()
					b.recv++
					b.mu.Unlock()
					if _, err := io.WriteString(c, name+":"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

func (b *backend) received() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recv
}

func (b *backend) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conn {
		c.Close()
	}
}

// freePort returns a port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natTable names a test's table "haventest_<pid>_<n>", so that tables a
// killed test run left behind can be recognised and removed (TestMain).
func natTable(t *testing.T) string {
	tableSeq++
	return fmt.Sprintf("haventest_%d_%d", os.Getpid(), tableSeq)
}

var tableSeq int

// TestMain deletes the tables of test runs that died before their cleanup:
// a leaked table would reset connections to its (ephemeral) port forever.
func TestMain(m *testing.M) {
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name, ok := strings.CutPrefix(line, "table ip haventest_")
			if !ok {
				continue
			}
			pid, _, _ := strings.Cut(name, "_")
			if _, err := os.Stat("/proc/" + pid); err != nil {
				_ = exec.Command("nft", "delete", "table", "ip", "haventest_"+name).Run()
			}
		}
	}
	os.Exit(m.Run())
}

func startNAT(t *testing.T) *NAT {
	t.Helper()
	n, err := NewNAT(NATConfig{Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Table: natTable(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return n
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return string(out)
}

func TestNATForwardsAndCutsOldEpoch(t *testing.T) {
	a, b := startBackend(t, "a", "127.0.1.71"), startBackend(t, "b", "127.0.2.71")
	n := startNAT(t)
	n.SetTarget(1, a.addr)
	if err := n.Err(); err != nil {
		t.Fatal(err)
	}

	c1 := dial(t, n.Addr())
	if got, err := roundTrip(c1, "x"); err != nil || got != "a:x" {
		t.Fatalf("epoch 1 reply = %q, %v; want a:x", got, err)
	}
	before := a.received()

	n.SetTarget(2, b.addr)
	if _, err := roundTrip(c1, "y"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("old connection after epoch change: err = %v, want ECONNRESET", err)
	}
	if _, err := roundTrip(c1, "y2"); err == nil {
		t.Error("old connection still usable after a reset")
	}
	if got := a.received(); got != before {
		t.Errorf("old backend received %d lines after the epoch change, want 0", got-before)
	}
	if got := b.received(); got != 0 {
		t.Errorf("new backend received %d lines of the old connection, want 0", got)
	}

	c2 := dial(t, n.Addr())
	if got, err := roundTrip(c2, "z"); err != nil || got != "b:z" {
		t.Fatalf("epoch 2 reply = %q, %v; want b:z", got, err)
	}
	// The same epoch and target again: connections are kept.
	n.SetTarget(2, b.addr)
	if got, err := roundTrip(c2, "w"); err != nil || got != "b:w" {
		t.Errorf("after idempotent SetTarget reply = %q, %v; want b:w", got, err)
	}
	if e, addr := n.Target(); e != 2 || addr != b.addr {
		t.Errorf("Target() = %d, %q; want 2, %q", e, addr, b.addr)
	}
}

// TestNATMovesItsAddress: AddAddr forwards a second address without
// cutting anything; RemoveAddr of the first cuts every connection (the
// clients reconnect, as after a failover), refuses the old address and
// frees its port; a failover after the move cuts connections through the
// new address; a port another program holds is refused and changes nothing.
func TestNATMovesItsAddress(t *testing.T) {
	a, b := startBackend(t, "a", "127.0.1.74"), startBackend(t, "b", "127.0.2.74")
	n := startNAT(t)
	oldAddr, newAddr := n.Addr(), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.SetTarget(1, a.addr)
	c1 := dial(t, oldAddr)
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	if err := n.AddAddr(context.Background(), newAddr); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(c1, "still"); err != nil || got != "a:still" {
		t.Errorf("old address's connection after AddAddr: %q, %v; want a:still (nothing cut)", got, err)
	}
	c2 := dial(t, newAddr)
	if got, err := roundTrip(c2, "new"); err != nil || got != "a:new" {
		t.Errorf("new address: %q, %v; want a:new", got, err)
	}
	if n.Addr() != newAddr {
		t.Errorf("Addr() = %s, want the newest %s", n.Addr(), newAddr)
	}

	if err := n.RemoveAddr(context.Background(), oldAddr); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"old": c1, "new": c2} {
		if _, err := roundTrip(c, "after"); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s address's connection after RemoveAddr: err = %v, want ECONNRESET", name, err)
		}
	}
	if _, err := net.DialTimeout("tcp", oldAddr, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial the removed address: err = %v, want ECONNREFUSED", err)
	}
	if ln, err := net.Listen("tcp", oldAddr); err != nil {
		t.Errorf("the removed address's port is still held: %v", err)
	} else {
		ln.Close()
	}
	c3 := dial(t, newAddr)
	if got, err := roundTrip(c3, "y"); err != nil || got != "a:y" {
		t.Errorf("new address after the move: %q, %v; want a:y", got, err)
	}
	n.SetTarget(2, b.addr)
	if _, err := roundTrip(c3, "z"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("new address's connection across a failover: err = %v, want ECONNRESET", err)
	}
	if got, err := roundTrip(dial(t, newAddr), "w"); err != nil || got != "b:w" {
		t.Errorf("new address after the failover: %q, %v; want b:w", got, err)
	}

	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := n.AddAddr(context.Background(), other.Addr().String()); err == nil || !strings.Contains(err.Error(), "another program listens") {
		t.Errorf("AddAddr of a held port: %v, want an error saying another program listens", err)
	}
	if err := n.RemoveAddr(context.Background(), newAddr); err == nil {
		t.Error("RemoveAddr of the only address succeeded")
	}
	if got, err := roundTrip(dial(t, newAddr), "v"); err != nil || got != "b:v" {
		t.Errorf("after the refused changes: %q, %v; want b:v", got, err)
	}
}

func TestNATNoPrimaryRefusesAtOnce(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.72")
	n := startNAT(t)

	// Started: no primary yet.
	if _, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial before any target: err = %v, want ECONNREFUSED", err)
	}

	n.SetTarget(1, a.addr)
	c1 := dial(t, n.Addr())
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	n.SetTarget(1, "") // primary fenced, none promoted yet
	// The fenced server's sockets close: the client learns at once.
	a.closeAll()
	if !closedSoon(c1) {
		t.Error("client of the fenced primary not closed when its server closed")
	}
	if _, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial with no primary: err = %v, want ECONNREFUSED", err)
	}
	// The endpoint holds a listener on its own address (the port
	// reservation); it changes nothing: refused with no primary, forwarded
	// with one.
	if _, err := net.Listen("tcp", n.Addr()); err == nil {
		t.Fatal("the endpoint's port is free while it runs")
	}
	if _, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial with no primary and a listener on the endpoint address: err = %v, want ECONNREFUSED", err)
	}
	n.SetTarget(2, a.addr)
	c2 := dial(t, n.Addr())
	if got, err := roundTrip(c2, "y"); err != nil || got != "a:y" {
		t.Errorf("with a listener on the endpoint address: reply = %q, %v; want a:y (forwarded)", got, err)
	}
}

func TestNATPauseHoldsNewConnectionsUntilSetTarget(t *testing.T) {
	a, b := startBackend(t, "a", "127.0.1.73"), startBackend(t, "b", "127.0.2.73")
	n := startNAT(t)
	n.SetTarget(1, a.addr)
	c1 := dial(t, n.Addr())
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}

	n.Pause()
	if err := n.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c1, "y"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection across a pause: err = %v, want ECONNRESET", err)
	}
	type result struct {
		c   net.Conn
		err error
	}
	held := make(chan result, 1)
	go func() {
		c, err := net.DialTimeout("tcp", n.Addr(), 10*time.Second)
		held <- result{c, err}
	}()
	select {
	case r := <-held:
		t.Fatalf("dial while paused returned %v, want it held", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	n.SetTarget(2, b.addr)
	r := <-held
	if r.err != nil {
		t.Fatalf("held dial after SetTarget: %v", r.err)
	}
	defer r.c.Close()
	if got, err := roundTrip(r.c, "z"); err != nil || got != "b:z" {
		t.Errorf("held connection reply = %q, %v; want b:z", got, err)
	}
}

func TestNATStartReplacesStaleTableAndStopRemovesIt(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.74")
	table := natTable(t)
	cfg := NATConfig{Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Table: table,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// A crashed daemon's table, with a rule pointing somewhere else.
	stale := fmt.Sprintf("table ip %s {\n chain junk { type nat hook output priority -100; ip daddr 127.0.0.1 tcp dport %s dnat to 127.0.9.9:9; }\n}\n",
		table, strings.TrimPrefix(cfg.Listen, "127.0.0.1:"))
	if err := runNFT(context.Background(), "nft", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "ip", table).Run() })

	var prev net.Conn        // admitted by the first run, which "crashes"
	for i := 0; i < 2; i++ { // a restart replaces the table of the first run
		n, err := NewNAT(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table: %v: %s", err, out)
		}
		if strings.Contains(string(out), "junk") {
			t.Errorf("stale chain survived Start:\n%s", out)
		}
		if prev != nil {
			if _, err := roundTrip(prev, "y"); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("connection of the previous run after a restart: err = %v, want ECONNRESET", err)
			}
		}
		n.SetTarget(1, a.addr)
		c := dial(t, n.Addr())
		if got, err := roundTrip(c, "x"); err != nil || got != "a:x" {
			t.Errorf("run %d: reply = %q, %v; want a:x", i, got, err)
		}
		prev = c
		if i == 1 {
			if err := n.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		} else {
			for _, ln := range n.reserved {
				ln.Close() // the crashed daemon's sockets close with it
			}
		}
	}
	if got := tables(t); strings.Contains(got, table) {
		t.Errorf("table %s still there after Stop:\n%s", table, got)
	}
}

// TestNATRefusesAPortAnotherProgramListensOn: the rules would take over
// that program's traffic; Start says so instead, and leaves no table.
func TestNATRefusesAPortAnotherProgramListensOn(t *testing.T) {
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	table := natTable(t)
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "ip", table).Run() })
	n, err := NewNAT(NATConfig{Listen: other.Addr().String(), Table: table, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another program listens on "+other.Addr().String()) {
		t.Fatalf("Start on a port in use: err = %v, want it to name the port and the cause", err)
	}
	if got := tables(t); strings.Contains(got, table) {
		t.Errorf("a failed Start left table %s:\n%s", table, got)
	}
	// The other program still gets its own connections.
	c, err := net.Dial("tcp", other.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := other.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
}

// marked counts the conntrack entries carrying n's tag.
func marked(t *testing.T, n *NAT) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/nf_conntrack")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, line := range strings.Split(string(data), "\n") {
		_, rest, ok := strings.Cut(line, " mark=")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, " ")
		m, err := strconv.ParseUint(v, 10, 32)
		if err == nil && uint32(m)&0xffff0000 == n.tag {
			count++
		}
	}
	return count
}

func TestNATStopCutsAdmittedConnections(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.76")
	n := startNAT(t)
	n.SetTarget(1, a.addr)
	c1 := dial(t, n.Addr())
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	if got := marked(t, n); got != 1 {
		t.Errorf("conntrack entries with the endpoint's tag = %d, want 1", got)
	}
	before := a.received()
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := marked(t, n); got != 0 {
		t.Errorf("conntrack entries with the endpoint's tag after Stop = %d, want 0", got)
	}
	if _, err := roundTrip(c1, "y"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection after Stop: err = %v, want ECONNRESET", err)
	}
	if got := a.received(); got != before {
		t.Errorf("backend received %d lines after Stop, want 0", got-before)
	}
}

func TestNATStartAfterStopHasNoPrimary(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.77")
	n := startNAT(t)
	n.SetTarget(1, a.addr)
	ctx := context.Background()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after a restart, before SetTarget: err = %v, want ECONNREFUSED", err)
	}
	n.SetTarget(1, a.addr) // the same target as before Stop: applied again
	c := dial(t, n.Addr())
	if got, err := roundTrip(c, "x"); err != nil || got != "a:x" {
		t.Errorf("reply = %q, %v; want a:x", got, err)
	}
}

func TestNATBadTargetFailsSafe(t *testing.T) {
	a := startBackend(t, "a", "127.0.1.75")
	n := startNAT(t)
	n.SetTarget(1, a.addr)
	c1 := dial(t, n.Addr())
	if _, err := roundTrip(c1, "x"); err != nil {
		t.Fatal(err)
	}
	if err := n.Repoint(context.Background(), 2, "db-b:5432"); err == nil {
		t.Fatal("Repoint to a host name: no error")
	}
	if n.Err() == nil {
		t.Error("Err() = nil after a failed repoint")
	}
	if _, err := roundTrip(c1, "y"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("old connection after a failed repoint: err = %v, want ECONNRESET", err)
	}
	if _, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after a failed repoint: err = %v, want ECONNREFUSED", err)
	}
	n.SetTarget(2, a.addr)
	if err := n.Err(); err != nil {
		t.Errorf("Err() after a good repoint = %v", err)
	}
}

func TestNATAvailable(t *testing.T) {
	if err := NATAvailable(context.Background()); err != nil {
		t.Errorf("NATAvailable as root with nft installed: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if err := NATAvailable(context.Background()); err == nil {
		t.Error("NATAvailable without nft on PATH: nil, want an error")
	}
}

func TestNATConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg NATConfig
		ok  bool
	}{
		{NATConfig{Listen: "127.0.0.1:5432", Table: "haven_1"}, true},
		{NATConfig{Listen: "", Table: "haven_1"}, false},
		{NATConfig{Listen: "127.0.0.1:0", Table: "haven_1"}, false},
		{NATConfig{Listen: "localhost:5432", Table: "haven_1"}, false},
		{NATConfig{Listen: "[::1]:5432", Table: "haven_1"}, false},
		{NATConfig{Listen: "0.0.0.0:5432", Table: "haven_1"}, false},
		{NATConfig{Listen: "127.0.0.1:5432", Table: ""}, false},
		{NATConfig{Listen: "127.0.0.1:5432", Table: "haven-1"}, false},
		{NATConfig{Listen: "127.0.0.1:5432", Table: "x; flush ruleset"}, false},
		{NATConfig{Listen: "127.0.0.1:5432", Table: strings.Repeat("a", 33)}, false},
		{NATConfig{Listen: "127.0.0.1:5432", Table: "haven_1", Timeout: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func TestNATRules(t *testing.T) {
	l := netip.MustParseAddrPort("127.0.0.1:5432")
	const tag = 0xabcd0000
	ours := "meta l4proto tcp ct original ip daddr 127.0.0.1 ct original proto-dst 5432"
	reject := func(mark string) string {
		return "add rule ip t filter_out " + ours + " ct direction original ct mark != " + mark + " reject with tcp reset\n"
	}
	flush := "flush chain ip t nat_out\nflush chain ip t filter_out\n"
	for _, tc := range []struct {
		name string
		st   natState
		want string
	}{
		{"no primary", natState{Epoch: 3, Gen: 7}, flush + reject("0xabcd0007")},
		{"primary", natState{Epoch: 3, Target: "127.0.2.250:5432", Gen: 8}, flush +
			"add rule ip t nat_out ip daddr 127.0.0.1 tcp dport 5432 tcp flags & (fin | syn | rst | ack) == syn ct mark set 0xabcd0008 dnat to 127.0.2.250:5432\n" +
			reject("0xabcd0008")},
		{"paused", natState{Epoch: 3, Target: "127.0.2.250:5432", Paused: true, Gen: 9}, flush +
			"add rule ip t filter_out " + ours + " ct state new tcp flags & (fin | syn | rst | ack) == syn drop\n" +
			reject("0xabcd0009")},
	} {
		if got := natRules("t", []netip.AddrPort{l}, tag, tc.st, false); got != tc.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", tc.name, got, tc.want)
		}
	}
	if got := natRules("t", []netip.AddrPort{l}, tag, natState{Gen: 1}, true); !strings.HasPrefix(got, "table ip t {\n") ||
		!strings.Contains(got, "type nat hook output priority -100") || !strings.Contains(got, "type filter hook output priority 0") {
		t.Errorf("create script lacks the table and chains:\n%s", got)
	}
}

func TestNextGenSkipsZero(t *testing.T) {
	if got := nextGen(0xffff); got != 1 {
		t.Errorf("nextGen(0xffff) = %d, want 1", got)
	}
	if got := nextGen(5); got != 6 {
		t.Errorf("nextGen(5) = %d, want 6", got)
	}
}

// TestNATRemovesTheTableOfACrashedRegionOnTheSameAddress: a region whose
// daemon was killed leaves its table; another region (another state dir,
// another table name) on the same endpoint address must not have its
// connections taken to the dead region's primary. A table on another
// address is left alone.
func TestNATRemovesTheTableOfACrashedRegionOnTheSameAddress(t *testing.T) {
	a, b := startBackend(t, "a", "127.0.1.75"), startBackend(t, "b", "127.0.2.75")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	crashed := fmt.Sprintf("haven_t%d_%d", os.Getpid(), 1)
	other := fmt.Sprintf("haven_t%d_%d", os.Getpid(), 2)
	mine := fmt.Sprintf("haven_t%d_%d", os.Getpid(), 3)
	t.Cleanup(func() {
		for _, tb := range []string{crashed, other, mine} {
			exec.Command("nft", "delete", "table", "ip", tb).Run()
		}
	})
	start := func(table, addr string) *NAT {
		n, err := NewNAT(NATConfig{Listen: addr, Table: table, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return n
	}
	dead := start(crashed, listen)
	dead.SetTarget(1, a.addr)
	for _, ln := range dead.reserved {
		ln.Close() // the daemon is killed: its sockets close, its table stays
	}
	elsewhere := start(other, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	elsewhere.SetTarget(1, a.addr)
	defer elsewhere.Stop(context.Background())

	n := start(mine, listen)
	defer n.Stop(context.Background())
	n.SetTarget(1, b.addr)
	c := dial(t, n.Addr())
	if got, err := roundTrip(c, "x"); err != nil || got != "b:x" {
		t.Errorf("through the new region's endpoint: reply = %q, %v; want b:x", got, err)
	}
	got := tables(t)
	if strings.Contains(got, crashed+"\n") {
		t.Errorf("the crashed region's table %s is still there:\n%s", crashed, got)
	}
	if !strings.Contains(got, other+"\n") {
		t.Errorf("the table %s of another address was removed:\n%s", other, got)
	}
}
