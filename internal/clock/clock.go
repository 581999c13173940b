// Package clock is the one time source every control loop takes, real or fake, so tests and drills can compress time.
package clock

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is what a control loop needs of time. Real is the wall clock; Fake is
// moved by hand in tests.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
	// NewTicker returns a ticker that fires every d (d > 0). Like
	// time.Ticker, it drops ticks a slow reader misses.
	NewTicker(d time.Duration) Ticker
}

// Ticker delivers ticks on C until stopped.
type Ticker interface {
	// C is the channel ticks arrive on.
	C() <-chan time.Time
	// Stop stops the ticker; no tick is sent after it returns.
	Stop()
}

// Real is the wall clock.
var Real Clock = realClock{}

// Or returns c, or Real when c is nil: the default for an optional field.
func Or(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Fake is a clock that moves only when Advance or Set is called. It is safe
// for concurrent use. The zero value is not usable; call NewFake.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	added   chan struct{} // closed and replaced whenever a waiter is added
}

type waiter struct {
	at     time.Time
	ch     chan time.Time
	period time.Duration // > 0 for tickers
	done   bool
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, added: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once the clock has
// been advanced by d. A d ≤ 0 fires at once.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &waiter{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		w.ch <- f.now
		return w.ch
	}
	f.addLocked(w)
	return w.ch
}

// NewTicker returns a ticker driven by Advance. It panics if d ≤ 0, as
// time.NewTicker does.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &waiter{at: f.now.Add(d), ch: make(chan time.Time, 1), period: d}
	f.addLocked(w)
	return &fakeTicker{f: f, w: w}
}

func (f *Fake) addLocked(w *waiter) {
	f.waiters = append(f.waiters, w)
	close(f.added)
	f.added = make(chan struct{})
}

// Advance moves the clock forward by d, firing every timer and ticker due on
// the way, in time order. A ticker fires at most once per Advance step it is
// due in if its reader is slow, like time.Ticker.
func (f *Fake) Advance(d time.Duration) {
	f.Set(f.Now().Add(d))
}

// Set moves the clock to t (never backwards), firing what falls due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
		if len(f.waiters) == 0 || f.waiters[0].at.After(t) {
			break
		}
		w := f.waiters[0]
		if w.at.After(f.now) {
			f.now = w.at
		}
		select {
		case w.ch <- f.now:
		default: // a slow reader drops the tick, as with time.Ticker
		}
		if w.period > 0 && !w.done {
			w.at = w.at.Add(w.period)
		} else {
			f.waiters = f.waiters[1:]
		}
	}
	if t.After(f.now) {
		f.now = t
	}
}

// Waiters returns how many timers and tickers are pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// BlockUntil waits until at least n timers or tickers are pending, or
// timeout (real time) passes; it reports whether they were. Tests use it to
// know a loop is parked before they Advance.
func (f *Fake) BlockUntil(n int, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		got, added := len(f.waiters), f.added
		f.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-added:
		case <-deadline:
			return false
		}
	}
}

type fakeTicker struct {
	f *Fake
	w *waiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.ch }

func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.w.done = true
	for i, w := range t.f.waiters {
		if w == t.w {
			t.f.waiters = append(t.f.waiters[:i], t.f.waiters[i+1:]...)
			break
		}
	}
}

// Offset is the wall clock shifted by an adjustable offset: Now moves with
// real time, After and tickers wait real time. Tests use it where real
// clients sign requests with the wall clock (SigV4) and the code under test
// must see time jump (expiry, skew, slow start). The zero value reads the
// wall clock; it is safe for concurrent use.
type Offset struct {
	off atomic.Int64
}

// Now returns the wall-clock time plus the offset.
func (o *Offset) Now() time.Time { return time.Now().Add(time.Duration(o.off.Load())) }

// After waits d of real time.
func (o *Offset) After(d time.Duration) <-chan time.Time { return time.After(d) }

// NewTicker ticks every d of real time.
func (o *Offset) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// Advance moves Now forward by d (backwards when d < 0).
func (o *Offset) Advance(d time.Duration) { o.off.Add(int64(d)) }
