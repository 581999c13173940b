package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Router is the VPC side of a Routed endpoint (*vpc.VPC): a virtual
// address its router forwards to a target, cutting the connections of an
// older target on a switch.
type Router interface {
	// Endpoint returns the named endpoint's virtual address.
	Endpoint(name string) (netip.AddrPort, bool)
	// SetEndpoint resumes the endpoint on target, keeping its connections.
	SetEndpoint(ctx context.Context, name string, target netip.AddrPort) error
	// SwitchEndpoint points it at target (none: refuse) and cuts every
	// connection made through it before.
	SwitchEndpoint(ctx context.Context, name string, target netip.AddrPort) error
	// PauseEndpoint cuts every connection and holds new ones.
	PauseEndpoint(ctx context.Context, name string) error
}

// RoutedConfig configures a Routed endpoint.
type RoutedConfig struct {
	// Router forwards the endpoint inside the VPC. Required.
	Router Router
	// Name is the endpoint's name in the VPC, e.g. "db". Required.
	Name string
	// Listen is the host's address of the endpoint, e.g. "127.0.0.1:6432":
	// a proxy there forwards to the virtual address, so the host reaches
	// the database as it does without a VPC. Required.
	Listen string
	// Timeout bounds each change of the router's rules. Default 5s.
	Timeout time.Duration
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Routed is the database endpoint in a region's VPC: the router forwards
// the endpoint's virtual address to the current epoch's primary (DNAT, the
// instances' path), and a proxy on the host's loopback address forwards to
// the virtual address (the host's path: drills, `haven db`, the operator).
// When the epoch or the primary changes, both cut every client connection
// (the router resets the old generation's connections on their next packet,
// the proxy closes its sessions), so no client keeps writing to a demoted
// node; with no primary, both refuse; while paused, both hold new
// connections until the next target.
type Routed struct {
	cfg   RoutedConfig
	log   *slog.Logger
	vip   netip.AddrPort
	proxy *Proxy

	mu     sync.Mutex
	epoch  uint64
	target netip.AddrPort
	err    error
}

var _ interface {
	Start(context.Context) error
	Stop(context.Context) error
	SetTarget(uint64, string)
	Pause()
	Addr() string
} = (*Routed)(nil)

// NewRouted checks cfg and returns an endpoint that touches nothing until Start.
func NewRouted(cfg RoutedConfig) (*Routed, error) {
	if cfg.Router == nil {
		return nil, errors.New("endpoint.router: required")
	}
	vip, ok := cfg.Router.Endpoint(cfg.Name)
	if !ok {
		return nil, fmt.Errorf("endpoint.name: the VPC has no endpoint %q", cfg.Name)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := New(Config{Listen: cfg.Listen, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &Routed{cfg: cfg, log: cfg.Logger.With("component", "pgha.endpoint", "mode", "vpc", "vip", vip.String()), vip: vip, proxy: p}, nil
}

// Start serves the host's address, with no primary (new connections refused).
func (r *Routed) Start(ctx context.Context) error {
	if err := r.cfg.Router.SwitchEndpoint(ctx, r.cfg.Name, netip.AddrPort{}); err != nil {
		return fmt.Errorf("start endpoint %s: %w", r.cfg.Name, err)
	}
	if err := r.proxy.Start(ctx); err != nil {
		return err
	}
	r.log.Info("endpoint listening", "host", r.proxy.Addr())
	return nil
}

// Stop closes the host's address and cuts every connection through the
// virtual address.
func (r *Routed) Stop(ctx context.Context) error {
	return errors.Join(r.proxy.Stop(ctx), r.cfg.Router.SwitchEndpoint(ctx, r.cfg.Name, netip.AddrPort{}))
}

// Addr is the host's address of the endpoint.
func (r *Routed) Addr() string { return r.proxy.Addr() }

// AddAddr makes the host's proxy listen on addr too (Proxy.AddAddr); the
// virtual address, the instances' path, does not move.
func (r *Routed) AddAddr(ctx context.Context, addr string) error { return r.proxy.AddAddr(ctx, addr) }

// RemoveAddr closes the host's proxy on addr and its connections
// (Proxy.RemoveAddr); the instances' connections through the virtual
// address are kept.
func (r *Routed) RemoveAddr(ctx context.Context, addr string) error {
	return r.proxy.RemoveAddr(ctx, addr)
}

// VIP is the endpoint's virtual address inside the VPC.
func (r *Routed) VIP() netip.AddrPort { return r.vip }

// SetTarget makes addr ("ip:port" in the VPC; "" = no primary) the primary
// for epoch and resumes a paused endpoint; when the epoch or the primary
// changes, every client connection is cut. Errors are logged and kept
// (Err); on error the router refuses everything.
func (r *Routed) SetTarget(epoch uint64, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	var target netip.AddrPort
	if addr != "" {
		var err error
		if target, err = netip.ParseAddrPort(addr); err != nil {
			r.fail(ctx, fmt.Errorf("repoint to %q: %w", addr, err))
			r.proxy.SetTarget(epoch, "")
			return
		}
	}
	r.mu.Lock()
	changed := epoch != r.epoch || target != r.target
	r.mu.Unlock()
	var err error
	if changed {
		err = r.cfg.Router.SwitchEndpoint(ctx, r.cfg.Name, target)
	} else {
		err = r.cfg.Router.SetEndpoint(ctx, r.cfg.Name, target)
	}
	if err != nil {
		r.fail(ctx, fmt.Errorf("repoint to %s for epoch %d: %w", addr, epoch, err))
		r.proxy.SetTarget(epoch, "")
		return
	}
	r.mu.Lock()
	r.epoch, r.target, r.err = epoch, target, nil
	r.mu.Unlock()
	hostTarget := ""
	if target.IsValid() {
		hostTarget = r.vip.String()
	}
	r.proxy.SetTarget(epoch, hostTarget)
	r.log.Info("endpoint target", "epoch", epoch, "target", addr)
}

// Pause cuts every client connection and holds new ones until the next
// SetTarget.
func (r *Routed) Pause() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	if err := r.cfg.Router.PauseEndpoint(ctx, r.cfg.Name); err != nil {
		r.fail(ctx, fmt.Errorf("pause: %w", err))
	}
	r.proxy.Pause()
}

// Target returns the current epoch and primary address ("" when none).
func (r *Routed) Target() (uint64, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.target.IsValid() {
		return r.epoch, ""
	}
	return r.epoch, r.target.String()
}

// Err is the last error changing the router's rules, nil once they hold the
// last SetTarget or Pause.
func (r *Routed) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// fail records err and tries to leave the router refusing everything.
func (r *Routed) fail(ctx context.Context, err error) {
	r.log.Error("endpoint", "err", err)
	if serr := r.cfg.Router.SwitchEndpoint(context.WithoutCancel(ctx), r.cfg.Name, netip.AddrPort{}); serr != nil {
		err = fmt.Errorf("%w (and refusing all connections failed too: %v)", err, serr)
	}
	r.mu.Lock()
	r.err, r.target = err, netip.AddrPort{}
	r.mu.Unlock()
}
