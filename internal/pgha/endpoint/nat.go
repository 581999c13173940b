package endpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NATConfig configures a NAT endpoint.
type NATConfig struct {
	// Listen is the stable address clients connect to: an IPv4 literal and a
	// non-zero port, e.g. "127.0.0.1:5432". Nothing listens on it: the kernel
	// rewrites each new connection's destination. Required.
	Listen string
	// Table is the nftables table (family ip) the endpoint owns: letters,
	// digits and '_', at most 32 characters, unique per region (see
	// NATTableName). A table of that name left by a crashed daemon is
	// replaced at Start. Required.
	Table string
	// Timeout bounds each nft command. Default 5s.
	Timeout time.Duration
	// NFT is the nft binary. Default "nft" from PATH.
	NFT string
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c NATConfig) Validate() error {
	if c.Listen == "" {
		return errors.New("endpoint.listen: required")
	}
	ap, err := netip.ParseAddrPort(c.Listen)
	if err != nil {
		return fmt.Errorf("endpoint.listen: %w", err)
	}
	if !ap.Addr().Is4() || ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return fmt.Errorf("endpoint.listen: the NAT endpoint needs an IPv4 address and a non-zero port, got %q", c.Listen)
	}
	if c.Table == "" || len(c.Table) > 32 {
		return fmt.Errorf("endpoint.table: 1 to 32 characters required, got %q", c.Table)
	}
	for _, r := range c.Table {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("endpoint.table: only letters, digits and '_' allowed, got %q", c.Table)
		}
	}
	if c.Timeout < 0 {
		return errors.New("endpoint.timeout: must not be negative")
	}
	return nil
}

// NATTableName returns a table name unique to key (for example the
// region's state directory): "haven_" and 8 hex digits.
func NATTableName(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return fmt.Sprintf("haven_%08x", h.Sum32())
}

// NAT is the endpoint as nftables rules: the kernel forwards each new
// connection to the current epoch's primary (DNAT in the output hook), so
// the data path costs no more than a direct connection.
//
// Every connection is marked with the generation of the rules that
// admitted it (conntrack mark); each SetTarget that changes the epoch or the
// target, and each Pause, starts a new generation, and in the same atomic
// nft transaction a rule answers every client packet of an older generation
// with a TCP reset. So an old connection never reaches the old primary
// again: it fails on its next use (or as soon as the old server closes it,
// e.g. when fenced). With no primary, new connections are refused (reset)
// at once; while paused, new connections' SYNs are dropped, so the client's
// kernel retransmits them (after 1 s, then 3 s, ...) and they reach the new
// primary after the next SetTarget.
//
// NAT covers locally generated traffic only (the output hook): right while
// the zones are loopback address ranges on one host.
type NAT struct {
	cfg NATConfig
	log *slog.Logger
	tag uint32 // high 16 bits of every mark: this table's flows

	mu sync.Mutex
	// addrs are the addresses the rules divert: cfg.Listen, and while
	// the endpoint moves (AddAddr, RemoveAddr) the old and the new one;
	// the last is the newest.
	addrs   []netip.AddrPort
	st      natState
	started bool
	// reserved holds each address's port while the table exists, so that
	// no other program can listen there and have its traffic taken over
	// (and a program already there is an error, not silently hijacked).
	reserved map[netip.AddrPort]net.Listener
	err      error // last failed apply; nil once the kernel has the current rules
}

// natState is what the rules express.
type natState struct {
	Epoch  uint64
	Target string // "" = no primary
	Paused bool
	Gen    uint16 // low 16 bits of the conntrack mark of admitted connections
}

// NewNAT returns a NAT endpoint for cfg with defaults filled in. It does
// not touch the kernel until Start.
func NewNAT(cfg NATConfig) (*NAT, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.NFT == "" {
		cfg.NFT = "nft"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &NAT{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "pgha.endpoint", "mode", "nat", "table", cfg.Table),
		addrs: []netip.AddrPort{netip.MustParseAddrPort(cfg.Listen)},
		tag:   tableTag(cfg.Table),
		// A random first generation: connections admitted by a previous
		// daemon's table of the same name are of another generation.
		st: natState{Gen: uint16(rand.N(0xffff)) + 1},
	}, nil
}

// Start replaces any table of the same name with this endpoint's, in the
// no-primary state (new connections refused).
func (n *NAT) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return fmt.Errorf("start nat endpoint %s: already started", n.cfg.Listen)
	}
	listen := n.addrs[0]
	ln, err := reserve(listen)
	if err != nil {
		return fmt.Errorf("start nat endpoint: %w", err)
	}
	n.st = natState{Gen: nextGen(n.st.Gen)} // no primary until SetTarget
	script := "table ip " + n.cfg.Table + "\ndelete table ip " + n.cfg.Table + "\n" + natRules(n.cfg.Table, n.addrs, n.tag, n.st, true)
	stale, err := n.staleTables(ctx, listen)
	if err != nil {
		n.log.Warn("look for tables of crashed regions on this endpoint", "err", err)
	}
	for _, t := range stale {
		// Declaring it first makes the delete succeed even if the table
		// went away since it was listed.
		script = "table ip " + t + "\ndelete table ip " + t + "\n" + script
	}
	if err := n.nft(ctx, script); err != nil {
		ln.Close()
		return fmt.Errorf("start nat endpoint %s: %w", n.cfg.Listen, err)
	}
	n.started, n.reserved = true, map[netip.AddrPort]net.Listener{listen: ln}
	if len(stale) > 0 {
		n.log.Warn("removed nftables tables a crashed region left on this endpoint address", "tables", stale)
		for _, t := range stale {
			if err := flushConntrackMark(tableTag(t), 0xffff0000); err != nil {
				n.log.Warn("forget connections of a removed table", "table", t, "err", err)
			}
		}
	}
	go refuse(ln)
	// Connections a crashed daemon's table admitted carry this table's tag
	// but an older generation: the reject rule cuts them on their next
	// packet; forgetting them makes that certain.
	if err := flushConntrackMark(n.tag, 0xffff0000); err != nil {
		n.log.Warn("forget connections of a previous run", "err", err)
	}
	n.log.Info("endpoint listening", "addr", n.cfg.Listen)
	return nil
}

// reserve listens on addr so that no other program can, with a clear
// error when one already does.
func reserve(addr netip.AddrPort) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: another program listens on %s; stop it or choose another database.endpoint", err, addr)
		}
		return nil, err
	}
	return ln, nil
}

// refuse closes every connection that reaches a reserved port: the rules
// divert every connection before it reaches the socket; one that reaches
// it anyway (the table deleted by hand) is closed at once, so its client
// fails fast instead of waiting in the backlog.
func refuse(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// AddAddr makes the endpoint divert addr too ("ip:port", IPv4), with the
// same primary and generation: no connection is cut. It is the first half
// of moving the endpoint (then RemoveAddr of the old address).
func (n *NAT) AddAddr(ctx context.Context, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() || ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return fmt.Errorf("add nat endpoint address %q: an IPv4 address and a non-zero port are required", addr)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		return fmt.Errorf("add nat endpoint address %s: not started", addr)
	}
	if slices.Contains(n.addrs, ap) {
		return nil
	}
	ln, err := reserve(ap)
	if err != nil {
		return fmt.Errorf("add nat endpoint address: %w", err)
	}
	if stale, err := n.staleTables(ctx, ap); err != nil || len(stale) > 0 {
		ln.Close()
		if err == nil {
			err = fmt.Errorf("the nftables tables %s of a crashed region divert it; haven down in that region (or nft delete table) first", strings.Join(stale, ", "))
		}
		return fmt.Errorf("add nat endpoint address %s: %w", addr, err)
	}
	addrs := append(slices.Clone(n.addrs), ap)
	if err := n.nft(ctx, natRules(n.cfg.Table, addrs, n.tag, n.st, false)); err != nil {
		ln.Close()
		return fmt.Errorf("add nat endpoint address %s: %w", addr, err)
	}
	n.addrs, n.reserved[ap] = addrs, ln
	go refuse(ln)
	n.log.Info("endpoint address added", "addr", addr)
	return nil
}

// RemoveAddr stops diverting addr and releases its port: a new
// generation of rules for the other addresses, in one transaction, then
// the kernel forgets every connection the endpoint admitted, as on a
// failover. Every client reconnects; one that tries addr again is refused
// (nothing listens there). The endpoint keeps at least one address.
func (n *NAT) RemoveAddr(ctx context.Context, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("remove nat endpoint address %q: %w", addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	i := slices.Index(n.addrs, ap)
	if i < 0 {
		return nil
	}
	if len(n.addrs) == 1 {
		return fmt.Errorf("remove nat endpoint address %s: it is the endpoint's only address", addr)
	}
	addrs := slices.Delete(slices.Clone(n.addrs), i, i+1)
	next := n.st
	next.Gen = nextGen(next.Gen)
	if err := n.nft(ctx, natRules(n.cfg.Table, addrs, n.tag, next, false)); err != nil {
		return fmt.Errorf("remove nat endpoint address %s: %w", addr, err)
	}
	n.addrs, n.st = addrs, next
	// The removed address's connections match no rule any more: forget
	// them (all of this table's, as Stop does: a connection admitted in
	// the instant since the new rules is reset and reconnects).
	ferr := flushConntrackMark(n.tag, 0xffff0000)
	if ln := n.reserved[ap]; ln != nil {
		ln.Close()
		delete(n.reserved, ap)
	}
	if ferr != nil {
		return fmt.Errorf("remove nat endpoint address %s: %w", addr, ferr)
	}
	n.log.Info("endpoint address removed", "addr", addr)
	return nil
}

// staleTables lists the other haven tables that divert this endpoint's
// address: a region whose daemon was killed leaves its table behind, and it
// would keep taking this endpoint's new connections to its dead primary
// (and resetting the rest). Called with the port reserved: a live endpoint
// holds its port, so a table for an address whose port we could reserve
// has no live owner.
func (n *NAT) staleTables(ctx context.Context, listen netip.AddrPort) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.cfg.NFT, "list", "tables", "ip").Output()
	if err != nil {
		return nil, fmt.Errorf("nft list tables: %w", err)
	}
	sig := fmt.Sprintf("ct original ip daddr %s ct original proto-dst %d ", listen.Addr(), listen.Port())
	var stale []string
	for _, line := range strings.Split(string(out), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "table ip ")
		if !ok || name == n.cfg.Table || !strings.HasPrefix(name, "haven_") {
			continue
		}
		rules, err := exec.CommandContext(ctx, n.cfg.NFT, "list", "table", "ip", name).Output()
		if err != nil {
			continue // deleted meanwhile
		}
		if strings.Contains(string(rules), sig) {
			stale = append(stale, name)
		}
	}
	return stale, nil
}

// RemoveNAT deletes the table a NAT endpoint left behind when its process
// died without Stop, and makes the kernel forget the connections it
// admitted. It reports whether there was such a table. Only call it when
// the endpoint's owner is known to be dead (the state dir's lock is held).
func RemoveNAT(ctx context.Context, table string) (bool, error) {
	bin, err := exec.LookPath("nft")
	if err != nil {
		return false, nil // no nftables: no table either
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if exec.CommandContext(ctx, bin, "list", "table", "ip", table).Run() != nil {
		return false, nil
	}
	if err := runNFT(ctx, bin, "delete table ip "+table+"\n"); err != nil {
		return false, fmt.Errorf("remove nat endpoint table %s: %w", table, err)
	}
	if err := flushConntrackMark(tableTag(table), 0xffff0000); err != nil {
		return true, fmt.Errorf("remove nat endpoint table %s: %w", table, err)
	}
	return true, nil
}

// tableTag is the high 16 bits of the conntrack marks of table's flows.
func tableTag(table string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(table))
	return (h.Sum32() & 0xffff) << 16
}

// Stop deletes the table and makes the kernel forget the connections the
// endpoint admitted (their conntrack entries): the next packet of each is
// answered with a reset, as if the proxy had closed it.
func (n *NAT) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		return nil
	}
	if err := n.nft(ctx, "delete table ip "+n.cfg.Table+"\n"); err != nil {
		return fmt.Errorf("stop nat endpoint %s: %w", n.cfg.Listen, err)
	}
	n.started = false
	for _, ln := range n.reserved {
		ln.Close()
	}
	n.reserved = nil
	if err := flushConntrackMark(n.tag, 0xffff0000); err != nil {
		return fmt.Errorf("stop nat endpoint %s: %w", n.cfg.Listen, err)
	}
	return nil
}

// Addr is the endpoint's address: the newest while it moves.
func (n *NAT) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs[len(n.addrs)-1].String()
}

// SetTarget makes addr ("ip:port"; "" = no primary) the primary for epoch
// and resumes a paused endpoint. When the epoch or the target changes every
// client connection is cut. Errors are logged and kept (see Err); on error
// the endpoint falls back to refusing everything.
func (n *NAT) SetTarget(epoch uint64, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	if err := n.Repoint(ctx, epoch, addr); err != nil {
		n.log.Error("repoint endpoint", "epoch", epoch, "target", addr, "err", err)
	}
}

// Repoint is SetTarget that returns its error.
func (n *NAT) Repoint(ctx context.Context, epoch uint64, addr string) error {
	if addr != "" {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Is4() {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.failSafeLocked(ctx, fmt.Errorf("repoint to %q: target must be an IPv4 address and port", addr))
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := epoch != n.st.Epoch || addr != n.st.Target
	if !changed && !n.st.Paused && n.err == nil {
		return nil
	}
	next := n.st
	next.Epoch, next.Target, next.Paused = epoch, addr, false
	if changed {
		next.Gen = nextGen(next.Gen)
	}
	if err := n.applyLocked(ctx, next); err != nil {
		return n.failSafeLocked(ctx, fmt.Errorf("repoint to %q for epoch %d: %w", addr, epoch, err))
	}
	n.log.Info("endpoint target", "epoch", epoch, "target", addr)
	return nil
}

// Pause cuts every client connection and holds new ones (their SYNs are
// dropped and retransmitted by the client) until the next SetTarget.
func (n *NAT) Pause() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	if err := n.PauseContext(ctx); err != nil {
		n.log.Error("pause endpoint", "err", err)
	}
}

// PauseContext is Pause that returns its error.
func (n *NAT) PauseContext(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	next := n.st
	next.Paused, next.Gen = true, nextGen(next.Gen)
	if err := n.applyLocked(ctx, next); err != nil {
		return n.failSafeLocked(ctx, fmt.Errorf("pause: %w", err))
	}
	n.log.Info("endpoint paused", "epoch", next.Epoch)
	return nil
}

// Target returns the current epoch and primary address ("" when none).
func (n *NAT) Target() (epoch uint64, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.Epoch, n.st.Target
}

// Err is the last error applying rules, nil when the kernel holds the rules
// of the last SetTarget or Pause.
func (n *NAT) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// applyLocked installs the rules for next in one nft transaction and, on
// success, makes it the state.
func (n *NAT) applyLocked(ctx context.Context, next natState) error {
	if !n.started {
		return errors.New("nat endpoint not started")
	}
	if err := n.nft(ctx, natRules(n.cfg.Table, n.addrs, n.tag, next, false)); err != nil {
		return err
	}
	n.st, n.err = next, nil
	return nil
}

// failSafeLocked records cause and tries to leave the endpoint refusing
// everything (no primary, a new generation), so that no connection keeps
// reaching a node that may have been demoted.
func (n *NAT) failSafeLocked(ctx context.Context, cause error) error {
	n.err = cause
	if !n.started {
		return cause
	}
	safe := natState{Epoch: n.st.Epoch, Gen: nextGen(n.st.Gen)}
	if err := n.nft(context.WithoutCancel(ctx), natRules(n.cfg.Table, n.addrs, n.tag, safe, false)); err != nil {
		return fmt.Errorf("%w (and refusing all connections failed too: %v)", cause, err)
	}
	n.st = safe
	return cause
}

func (n *NAT) nft(ctx context.Context, script string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	return runNFT(ctx, n.cfg.NFT, script)
}

func runNFT(ctx context.Context, bin, script string) error {
	cmd := exec.CommandContext(ctx, bin, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("run nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func nextGen(g uint16) uint16 {
	g++
	if g == 0 {
		g = 1
	}
	return g
}

// natRules is the nft script that sets table's chains to express st for
// the endpoint's addresses. create declares the table and chains too.
// Connections to an address are recognised by their original (pre-DNAT)
// destination.
//
//   - nat_out (nat, output, -100): a new connection's SYN gets the mark
//     tag|gen and is sent to the target (only when there is one, unpaused);
//   - filter_out (filter, output, 0): while paused, a new connection's SYN is
//     dropped (the client retransmits it); any other packet from a client
//     whose connection does not carry the current mark (older generation,
//     or never admitted: no primary) is answered with a TCP reset.
func natRules(table string, addrs []netip.AddrPort, tag uint32, st natState, create bool) string {
	var b strings.Builder
	if create {
		fmt.Fprintf(&b, "table ip %s {\n", table)
		b.WriteString("\tchain nat_out { type nat hook output priority -100; policy accept; }\n")
		b.WriteString("\tchain filter_out { type filter hook output priority 0; policy accept; }\n")
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "flush chain ip %s nat_out\n", table)
	fmt.Fprintf(&b, "flush chain ip %s filter_out\n", table)
	mark := fmt.Sprintf("0x%08x", tag|uint32(st.Gen))
	const syn = "tcp flags & (fin | syn | rst | ack) == syn"
	for _, listen := range addrs {
		ours := fmt.Sprintf("meta l4proto tcp ct original ip daddr %s ct original proto-dst %d", listen.Addr(), listen.Port())
		if st.Target != "" && !st.Paused {
			fmt.Fprintf(&b, "add rule ip %s nat_out ip daddr %s tcp dport %d %s ct mark set %s dnat to %s\n",
				table, listen.Addr(), listen.Port(), syn, mark, st.Target)
		}
		if st.Paused {
			fmt.Fprintf(&b, "add rule ip %s filter_out %s ct state new %s drop\n", table, ours, syn)
		}
		fmt.Fprintf(&b, "add rule ip %s filter_out %s ct direction original ct mark != %s reject with tcp reset\n", table, ours, mark)
	}
	return b.String()
}

// NATAvailable reports why a NAT endpoint cannot run here (nil when it
// can): nft missing, or not allowed to create a nat chain (not root, no
// nf_tables). The region falls back to the Proxy when it is not nil.
func NATAvailable(ctx context.Context) error {
	bin, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nat endpoint unavailable: %w (Debian package nftables)", err)
	}
	probe := fmt.Sprintf("haven_probe_%08x", rand.Uint32())
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	script := fmt.Sprintf("table ip %[1]s {\n\tchain nat_out { type nat hook output priority -100; policy accept; }\n\tchain filter_out { type filter hook output priority 0; policy accept; }\n}\n"+
		"add rule ip %[1]s nat_out ip daddr 127.0.0.1 tcp dport 9 ct mark set 0x1 dnat to 127.0.0.1:9\n"+
		"add rule ip %[1]s filter_out meta l4proto tcp ct original ip daddr 127.0.0.1 ct original proto-dst 9 ct direction original ct mark != 0x1 reject with tcp reset\n"+
		"delete table ip %[1]s\n", probe)
	if err := runNFT(ctx, bin, script); err != nil {
		return fmt.Errorf("nat endpoint unavailable: %w", err)
	}
	return nil
}
