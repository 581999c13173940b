package lb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// load drives GETs from workers goroutines until stop is called, and counts
// successes and failures (any transport error or non-200).
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, c *http.Client, url string, workers int) *load {
	ld := &load{stop: make(chan struct{})}
	for range workers {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					ld.failed.Add(1)
					ld.mu.Lock()
					ld.errs = append(ld.errs, err.Error())
					ld.mu.Unlock()
					continue
				}
				ld.ok.Add(1)
				time.Sleep(time.Millisecond) // leave CPU for health checks on a shared machine
			}
		}()
	}
	t.Cleanup(ld.halt)
	return ld
}

func (ld *load) halt() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

// waitOK waits until n more requests succeeded.
func (ld *load) waitOK(t *testing.T, n int64) {
	t.Helper()
	target := ld.ok.Load() + n
	deadline := time.Now().Add(15 * time.Second)
	for ld.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d ok, %d failed", ld.ok.Load(), ld.failed.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (ld *load) check(t *testing.T) {
	t.Helper()
	ld.halt()
	if n := ld.failed.Load(); n != 0 {
		ld.mu.Lock()
		t.Errorf("%d of %d GETs failed, want 0; first errors: %v", n, n+ld.ok.Load(), ld.errs[:min(len(ld.errs), 5)])
		ld.mu.Unlock()
	}
	t.Logf("%d GETs, 0 failed", ld.ok.Load())
}

func TestKillBackendZeroFailedGETs(t *testing.T) {
	// Slow health checks, so the requests' connection errors find the
	// killed target first even when a loaded machine takes a while to
	// tear the process down (with the fast ones, checks timing out on the
	// dying process could mark it unhealthy before any request failed).
	l, c := startLB(t, func(c *Config) { c.HealthCheck.Interval, c.HealthCheck.Timeout = time.Second, 900*time.Millisecond })
	pa, pb := startBackendProcess(t), startBackendProcess(t)
	register(t, l, "a", "za", pa.addr)
	register(t, l, "b", "zb", pb.addr)
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)

	ld := startLoad(t, c, l.HTTPSURL()+"/", 4)
	ld.waitOK(t, 200)
	if err := pa.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, "a", StateUnhealthy)
	ld.waitOK(t, 200)
	ld.check(t)
	if got := l.Stats().Ejections; got < 1 {
		t.Errorf("Stats.Ejections = %d, want >= 1 (a connection error under load ejects at once)", got)
	}
}

func TestFreezeBackendZeroFailedGETs(t *testing.T) {
	l, c := startLB(t, nil)
	var mu sync.Mutex
	var reasons []string
	l.OnChange(func(s TargetStatus) {
		if s.ID == "a" {
			mu.Lock()
			reasons = append(reasons, string(s.State)+":"+s.Reason)
			mu.Unlock()
		}
	})
	pa, pb := startBackendProcess(t), startBackendProcess(t)
	register(t, l, "a", "za", pa.addr)
	register(t, l, "b", "zb", pb.addr)
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)

	ld := startLoad(t, c, l.HTTPSURL()+"/", 4)
	ld.waitOK(t, 200)
	retriesBefore := l.Stats().Retries
	if err := pa.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, "a", StateUnhealthy)
	ld.waitOK(t, 200)
	if err := pa.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, "a", StateHealthy)
	ld.waitOK(t, 100)
	ld.check(t)

	s := l.Stats()
	if s.Retries == retriesBefore {
		t.Errorf("no request was retried; want the requests stuck on the frozen target cut and retried")
	}
	if s.Ejections != 0 {
		t.Errorf("Stats.Ejections = %d, want 0 (a frozen process gives no connection error)", s.Ejections)
	}
	mu.Lock()
	defer mu.Unlock()
	// Detected by active checks timing out, then back after passing them.
	want := []string{"initial:" + ReasonInitialHealthChecking, "healthy:", "unhealthy:" + ReasonTimeout, "healthy:"}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Errorf("target a transitions = %v, want %v", reasons, want)
	}
}

// TestPartitionedTargetCutWhileConnecting: a target behind a partition
// answers nothing, so new connections to it hang in the dial. When health
// checks mark it unhealthy, the requests waiting on those dials are cut at
// once and go to the other target: none fails (the dial is not left to run
// out its own timeout, past the retry budget).
func TestPartitionedTargetCutWhileConnecting(t *testing.T) {
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every request dials anew
		io.WriteString(w, "a")
	})
	b := newBackend(t, "b", nil)
	var partitioned atomic.Bool
	var hung atomic.Int64
	l, c := startLB(t, func(cfg *Config) {
		cfg.RetryBudget = 3 * time.Second
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == a.addr() && partitioned.Load() {
				hung.Add(1)
				<-ctx.Done() // no SYN-ACK ever comes
				return nil, ctx.Err()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	register(t, l, "a", "za", a.addr())
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)

	ld := startLoad(t, c, l.HTTPSURL()+"/", 4)
	ld.waitOK(t, 100)
	partitioned.Store(true)
	waitState(t, l, "a", StateUnhealthy)
	ld.waitOK(t, 100)
	ld.check(t)
	if hung.Load() == 0 {
		t.Fatal("no dial to the partitioned target hung: the test did not test the cut while connecting")
	}
}
