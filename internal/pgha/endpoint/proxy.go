// Package endpoint is the database's stable address: a TCP proxy that forwards only to the current epoch's primary.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	// Listener, if set, is served instead of binding Listen (a socket the
	// process inherited). Default nil.
	Listener net.Listener
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Listener != nil {
		return nil
	}
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
	ln  net.Listener

	mu       sync.Mutex
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
	ln := p.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", p.cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", p.cfg.Listen, err)
		}
	}
	p.ln = ln
	p.wg.Add(1)
	go p.serve()
	p.log.Info("endpoint listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string {
	if p.ln == nil {
		return p.cfg.Listen
	}
	return p.ln.Addr().String()
}

// Stop closes the listener and every connection.
func (p *Proxy) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.closeAllLocked()
	p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
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

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
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
