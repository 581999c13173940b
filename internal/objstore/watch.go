package objstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// Event kinds a Watcher reports.
const (
	// EventUnreachable: the store's control socket stopped answering.
	EventUnreachable = "unreachable"
	// EventReachable: it answers again.
	EventReachable = "reachable"
)

// Observed is what a Watcher last saw of the store: the snapshot the store
// published, or why it could not be read.
type Observed struct {
	// Status is the last snapshot read (zero before the first success).
	Status Status
	// Polled is when the store was last asked.
	Polled time.Time
	// Err is why the last poll failed; nil when it succeeded.
	Err error
}

// WatchEvent is a change of the store's reachability.
type WatchEvent struct {
	// Kind is EventUnreachable or EventReachable.
	Kind string
	// Message says it in a sentence.
	Message string
}

// Watcher polls a store's control socket and publishes what it saw as an
// immutable Observed through an atomic pointer: readers (the daemon's
// status) never wait on the socket. It reports when the store stops and
// starts answering.
type Watcher struct {
	// Client is the store's control client. Required.
	Client *Client
	// Interval between polls. Default 1s.
	Interval time.Duration
	// OnEvent is told of reachability changes; it must not block. Optional.
	OnEvent func(WatchEvent)
	// Clock paces the polls. Default the real clock.
	Clock clock.Clock
	// Logger receives poll failures once per change. Default slog.Default().
	Logger *slog.Logger

	cur    atomic.Pointer[Observed]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Observed returns the last observation (zero before the first poll).
func (w *Watcher) Observed() Observed {
	if o := w.cur.Load(); o != nil {
		return *o
	}
	return Observed{}
}

// Start polls once, then every Interval until Stop.
func (w *Watcher) Start(ctx context.Context) error {
	if w.Client == nil {
		return fmt.Errorf("objstore watcher: Client is required")
	}
	if w.Interval <= 0 {
		w.Interval = time.Second
	}
	w.Clock = clock.Or(w.Clock)
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.poll(ctx)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := w.Clock.NewTicker(w.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				w.poll(ctx)
			}
		}
	}()
	return nil
}

// Stop ends the polling.
func (w *Watcher) Stop(context.Context) error {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
	return nil
}

func (w *Watcher) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, max(w.Interval, time.Second))
	defer cancel()
	st, err := w.Client.Status(pctx)
	if ctx.Err() != nil {
		return
	}
	prev := w.cur.Load()
	next := &Observed{Status: st, Polled: w.Clock.Now(), Err: err}
	if err != nil && prev != nil {
		next.Status = prev.Status // keep the last snapshot, marked stale by Err
	}
	// A change is reported before the observation is published, so whoever
	// sees the new observation finds its event in the log too.
	wasDown := prev != nil && prev.Err != nil
	switch {
	case err != nil && (prev == nil || !wasDown):
		w.Logger.Warn("object store does not answer on its control socket", "component", "objstore", "err", err)
		w.emit(WatchEvent{Kind: EventUnreachable, Message: "the object store does not answer: " + err.Error()})
	case err == nil && wasDown:
		w.Logger.Info("object store answers again", "component", "objstore", "pid", st.PID)
		w.emit(WatchEvent{Kind: EventReachable, Message: fmt.Sprintf("the object store answers again (pid %d)", st.PID)})
	}
	w.cur.Store(next)
}

func (w *Watcher) emit(e WatchEvent) {
	if w.OnEvent != nil {
		w.OnEvent(e)
	}
}
