// Package endpoint is the database's stable address: a TCP proxy that forwards only to the current epoch's primary.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// Config configures a Proxy.
type Config struct {
	// Listen is the stable address clients connect to, e.g. "127.0.0.1:5432".
	// Port 0 picks a free port (see Addr). Required.
	Listen string
	// DialTimeout bounds the connection to the primary. Default 1s.
	DialTimeout time.Duration
	// PauseTimeout is the longest a new connection is held while the proxy
	// is paused (planned switchover); it is then closed. Default 10s.
	PauseTimeout time.Duration
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("endpoint.listen: required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("endpoint.listen: %w", err)
	}
	if c.DialTimeout < 0 || c.PauseTimeout < 0 {
		return errors.New("endpoint: timeouts must not be negative")
	}
	return nil
}

// Proxy forwards client connections to the primary of the current epoch.
//
// When the epoch (or target) changes it closes every client connection, so
// no client keeps talking to a demoted node. When there is no primary it
// accepts and closes new connections at once: clients fail fast and retry,
// instead of hanging in connect until their own timeout. While paused (planned
// switchover) new connections are held, not refused, until the next target.
type Proxy struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// lns are the listeners: cfg.Listen's, and while the proxy moves
	// (AddAddr, RemoveAddr) the old and the new one; the last is the
	// newest.
	lns      []net.Listener
	epoch    uint64
	target   string
	paused   bool
	changed  chan struct{} // closed and replaced at every SetTarget/Pause
	sessions map[*session]struct{}
	closed   bool
	wg       sync.WaitGroup
}

type session struct {
	client, server net.Conn
	epoch          uint64
	once           sync.Once
}

func (s *session) close() {
	s.once.Do(func() {
		s.client.Close()
		s.server.Close()
	})
}

// New returns a Proxy for cfg with defaults filled in.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.PauseTimeout == 0 {
		cfg.PauseTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxy{cfg: cfg, log: cfg.Logger.With("component", "pgha.endpoint"), changed: make(chan struct{}), sessions: map[*session]struct{}{}}, nil
}

// Start listens and serves in the background.
func (p *Proxy) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", p.cfg.Listen, err)
	}
	p.mu.Lock()
	p.lns = []net.Listener{ln}
	p.mu.Unlock()
	p.wg.Add(1)
	go p.serve(ln)
	p.log.Info("endpoint listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the proxy listens on: the newest while it moves.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lns) == 0 {
		return p.cfg.Listen
	}
	return p.lns[len(p.lns)-1].Addr().String()
}

// AddAddr listens on addr too, forwarding as on the first address; no
// connection is cut. It is the first half of moving the proxy (then
// RemoveAddr of the old address).
func (p *Proxy) AddAddr(ctx context.Context, addr string) error {
	p.mu.Lock()
	for _, ln := range p.lns {
		if ln.Addr().String() == addr {
			p.mu.Unlock()
			return nil
		}
	}
	p.mu.Unlock()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("add endpoint address: listen on %s: %w", addr, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return fmt.Errorf("add endpoint address %s: the endpoint is stopped", addr)
	}
	p.lns = append(p.lns, ln)
	p.wg.Add(1)
	p.mu.Unlock()
	go p.serve(ln)
	p.log.Info("endpoint address added", "addr", ln.Addr().String())
	return nil
}

// RemoveAddr closes the listener on addr and every client connection, as
// a new epoch does: every client reconnects, and one that tries addr
// again is refused. The proxy keeps at least one address.
func (p *Proxy) RemoveAddr(_ context.Context, addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.IndexFunc(p.lns, func(ln net.Listener) bool { return ln.Addr().String() == addr })
	if i < 0 {
		return nil
	}
	if len(p.lns) == 1 {
		return fmt.Errorf("remove endpoint address %s: it is the endpoint's only address", addr)
	}
	p.lns[i].Close()
	p.lns = slices.Delete(p.lns, i, i+1)
	p.closeAllLocked()
	p.log.Info("endpoint address removed", "addr", addr)
	return nil
}

// Stop closes the listener and every connection.
func (p *Proxy) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.closeAllLocked()
	for _, ln := range p.lns {
		ln.Close()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop endpoint: %w", ctx.Err())
	}
}

// SetTarget makes addr the primary for epoch ("" = no primary) and resumes a
// paused proxy. Every client connection is closed when the epoch or the
// target changes.
func (p *Proxy) SetTarget(epoch uint64, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch != p.epoch || addr != p.target {
		p.closeAllLocked()
	}
	p.epoch, p.target, p.paused = epoch, addr, false
	close(p.changed)
	p.changed = make(chan struct{})
	p.log.Info("endpoint target", "epoch", epoch, "target", addr)
}

// Pause closes every client connection and holds new ones until the next
// SetTarget (or PauseTimeout).
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	p.closeAllLocked()
	close(p.changed)
	p.changed = make(chan struct{})
	p.log.Info("endpoint paused", "epoch", p.epoch)
}

// Target returns the current epoch and primary address ("" when none).
func (p *Proxy) Target() (epoch uint64, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch, p.target
}

// Sessions is the number of open client connections.
func (p *Proxy) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

func (p *Proxy) closeAllLocked() {
	for s := range p.sessions {
		s.close()
		delete(p.sessions, s)
	}
}

func (p *Proxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// route waits out a pause and returns the current epoch and target.
func (p *Proxy) route() (uint64, string, bool) {
	deadline := time.NewTimer(p.cfg.PauseTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return 0, "", false
		}
		if !p.paused {
			e, t := p.epoch, p.target
			p.mu.Unlock()
			return e, t, t != ""
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return 0, "", false
		}
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	epoch, target, ok := p.route()
	if !ok {
		client.Close() // no primary: refuse at once
		return
	}
	server, err := net.DialTimeout("tcp", target, p.cfg.DialTimeout)
	if err != nil {
		p.log.Warn("dial primary", "target", target, "epoch", epoch, "err", err)
		client.Close()
		return
	}
	s := &session{client: client, server: server, epoch: epoch}
	p.mu.Lock()
	if p.closed || p.paused || p.epoch != epoch || p.target != target {
		p.mu.Unlock()
		s.close()
		return
	}
	p.sessions[s] = struct{}{}
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // splice(2) between TCP sockets on Linux
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	s.close()
	<-done
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}
