package edge

import (
	"context"
	"sync"
)

// flightGroup collapses concurrent fetches of one cache key into one origin
// request, as CloudFront does for simultaneous requests (request
// collapsing). It is golang.org/x/sync/singleflight's shape, with two
// differences the edge needs: a caller learns at once whether it joined a
// fetch in flight (the counters report collapsed requests while the fetch is
// still running), and the fetch runs detached from the first caller, so a
// viewer that goes away does not fail the others.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  fetchResult
}

// do runs fn once for key: the first caller starts it with start (which must
// run fn in a new goroutine and return), later callers join, and onJoin runs
// for them before they wait. Every caller waits until fn returns or its own
// ctx ends. joined reports whether the caller joined a fetch that another
// caller started.
func (g *flightGroup) do(ctx context.Context, key string, start func(func()), fn func() fetchResult, onJoin func()) (res fetchResult, joined bool, err error) {
	f, joined := g.begin(key, start, fn)
	if joined {
		onJoin()
	}
	select {
	case <-f.done:
		return f.res, joined, nil
	case <-ctx.Done():
		return fetchResult{}, joined, ctx.Err()
	}
}

// launch starts fn for key unless a fetch of key is in flight; it does not
// wait. It reports whether it started one.
func (g *flightGroup) launch(key string, start func(func()), fn func() fetchResult) bool {
	_, joined := g.begin(key, start, fn)
	return !joined
}

func (g *flightGroup) begin(key string, start func(func()), fn func() fetchResult) (*flight, bool) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight{}
	}
	if f, ok := g.m[key]; ok {
		g.mu.Unlock()
		return f, true
	}
	f := &flight{done: make(chan struct{})}
	g.m[key] = f
	g.mu.Unlock()
	start(func() {
		defer func() {
			g.mu.Lock()
			delete(g.m, key)
			g.mu.Unlock()
			close(f.done)
		}()
		f.res = fn()
	})
	return f, false
}
