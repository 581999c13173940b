package objstore

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Relay forwards TCP connections accepted on its listeners to the store's
// S3 endpoint, byte for byte: the store's interface endpoint inside a
// VPC, whose instances cannot reach the host's loopback address where the
// store listens. Requests keep their Host header, so SigV4 signatures
// made for the relay's address verify at the store. It is safe for
// concurrent use.
type Relay struct {
	// Target is the store's S3 address, host:port. Required.
	Target string
	// DialTimeout bounds one connection to Target. Default 2s.
	DialTimeout time.Duration
	// Logger receives dial failures. Default slog.Default().
	Logger *slog.Logger

	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Serve accepts connections on ln until Close, each relayed in its own
// goroutine. It returns at once.
func (r *Relay) Serve(ln net.Listener) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("objstore relay: closed")
	}
	if r.conns == nil {
		r.conns = map[net.Conn]struct{}{}
	}
	r.lns = append(r.lns, ln)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !r.track(c) {
				c.Close()
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.relay(c)
			}()
		}
	}()
	return nil
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	for _, c := range cs {
		delete(r.conns, c)
	}
	r.mu.Unlock()
}

func (r *Relay) relay(c net.Conn) {
	defer c.Close()
	timeout := r.DialTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	up, err := net.DialTimeout("tcp", r.Target, timeout)
	if err != nil {
		r.untrack(c)
		log := r.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Warn("relay to the object store", "component", "objstore-relay", "target", r.Target, "err", err)
		return
	}
	defer up.Close()
	if !r.track(up) {
		r.untrack(c)
		return
	}
	defer r.untrack(c, up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// Close closes the listeners and every relayed connection, and waits for
// the relay's goroutines.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for _, ln := range r.lns {
		_ = ln.Close()
	}
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}
