package objstore

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatcher polls a control socket that answers, stops answering and
// answers again: the snapshot follows, the last good one is kept while the
// store is away, and each change is reported once.
func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	var serving atomic.Bool
	var polls atomic.Int64
	serving.Store(true)
	l, err := net.Listen("unix", filepath.Join(dir, SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := polls.Add(1)
		if !serving.Load() {
			http.Error(w, `{"error":"down"}`, http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(Status{PID: 42, Ready: true, Credentials: int(n)})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); os.Remove(filepath.Join(dir, SocketFile)) })

	var mu sync.Mutex
	var events []string
	w := &Watcher{Client: NewClient(dir), Interval: 20 * time.Millisecond, Logger: testLogger(t), OnEvent: func(e WatchEvent) {
		mu.Lock()
		events = append(events, e.Kind)
		mu.Unlock()
	}}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop(context.Background())
	if o := w.Observed(); o.Err != nil || o.Status.PID != 42 {
		t.Fatalf("after Start: %+v", o)
	}
	wait := func(what string, cond func(Observed) bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(w.Observed()); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, w.Observed())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	serving.Store(false)
	wait("the store to be unreachable", func(o Observed) bool { return o.Err != nil })
	if o := w.Observed(); o.Status.PID != 42 {
		t.Errorf("the last good snapshot was dropped while the store was away: %+v", o.Status)
	}
	time.Sleep(60 * time.Millisecond) // more failed polls: still one event
	serving.Store(true)
	wait("the store to answer again", func(o Observed) bool { return o.Err == nil })
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0] != EventUnreachable || events[1] != EventReachable {
		t.Errorf("events = %v, want [unreachable reachable]", events)
	}
}
