package backup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Restored is one restored server kept running by Restores.
type Restored struct {
	// ID names it, e.g. r20260102t150405.000.
	ID string
	// Server is the running server.
	Server *RestoredServer
	// Took is how long the restore took.
	Took time.Duration
}

// Restores keeps the servers restored to a point in time running until
// they are stopped, each in its own directory under Dir.
type Restores struct {
	// Manager restores from its repository. Required.
	Manager *Manager
	// Dir holds one directory per restore. Required, absolute; the postgres
	// user must be able to traverse to it.
	Dir string

	mu   sync.Mutex
	runs map[string]*Restored
}

// ErrUnknownRestore is returned by Stop for an id that is not running.
var ErrUnknownRestore = errors.New("no such restored server")

// Start restores the repository to target into a new server on 127.0.0.1
// (port 0: a free one) and keeps it running.
func (r *Restores) Start(ctx context.Context, target time.Time, port int) (*Restored, error) {
	if target.IsZero() {
		return nil, errors.New("restore: the target time is required")
	}
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("restore: pick a port: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	id := "r" + time.Now().UTC().Format("20060102t150405.000")
	dir := filepath.Join(r.Dir, id)
	for _, d := range []string{r.Dir, dir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("restore: create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("restore: chmod %s: %w", d, err)
		}
	}
	start := time.Now()
	srv, err := r.Manager.Restore(ctx, RestoreOptions{TargetTime: target, DataDir: filepath.Join(dir, "data"),
		ListenAddr: netip.MustParseAddr("127.0.0.1"), Port: port})
	if err != nil {
		return nil, err
	}
	run := &Restored{ID: id, Server: srv, Took: time.Since(start)}
	r.mu.Lock()
	if r.runs == nil {
		r.runs = map[string]*Restored{}
	}
	r.runs[id] = run
	r.mu.Unlock()
	return run, nil
}

// List returns the restored servers, oldest first.
func (r *Restores) List() []*Restored {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Restored, 0, len(r.runs))
	for _, run := range r.runs {
		out = append(out, run)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stop stops restored server id (its data directory is kept).
func (r *Restores) Stop(ctx context.Context, id string) (*Restored, error) {
	r.mu.Lock()
	run := r.runs[id]
	delete(r.runs, id)
	r.mu.Unlock()
	if run == nil {
		return nil, fmt.Errorf("restored server %q: %w", id, ErrUnknownRestore)
	}
	return run, run.Server.Stop(ctx)
}

// StopAll stops every restored server.
func (r *Restores) StopAll(ctx context.Context) error {
	r.mu.Lock()
	runs := r.runs
	r.runs = nil
	r.mu.Unlock()
	var errs []error
	for _, run := range runs {
		errs = append(errs, run.Server.Stop(ctx))
	}
	return errors.Join(errs...)
}
