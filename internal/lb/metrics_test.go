package lb

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetricsCountByTargetZoneAndClass: every answered request is counted
// once, against the zone and target its last attempt went to and its status
// class; target response times and request durations are observed once per
// request; ejections count per target and zone; a connection held open
// shows in ActiveConnections; a removed target leaves Targets.
func TestMetricsCountByTargetZoneAndClass(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) {
		cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = 5*time.Second, time.Second
		cfg.HealthCheck.HealthyThreshold = 1
		cfg.DeregistrationDelay = 100 * time.Millisecond
	})
	// Before any target: one 503 the LB generated, in zone "".
	if status, _ := get(t, c, l.HTTPSURL()+"/"); status != http.StatusServiceUnavailable {
		t.Fatalf("status with no target = %d, want 503", status)
	}
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/missing") {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "a")
	})
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	register(t, l, "a", "za", a.addr())
	waitState(t, l, "a", StateHealthy)
	for range 3 {
		get(t, c, l.HTTPSURL()+"/")
	}
	get(t, c, l.HTTPSURL()+"/missing")
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "b", StateHealthy)
	if err := l.Deregister(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if status, _ := get(t, c, l.HTTPSURL()+"/"); status != 500 {
			t.Fatalf("status from b = %d, want 500", status)
		}
	}

	// A request is counted once its answer has been written (on the
	// HTTP/1.1 loop, just after the client may have read it).
	m := l.Metrics()
	for deadline := time.Now().Add(2 * time.Second); m.RequestDuration.Count < 7 && time.Now().Before(deadline); m = l.Metrics() {
		time.Sleep(5 * time.Millisecond)
	}
	zones := map[string]ZoneMetrics{}
	for _, z := range m.Zones {
		zones[z.Zone] = z
	}
	want := map[string]ClassCounts{"": {0, 0, 0, 1}, "za": {3, 0, 1, 0}, "zb": {0, 0, 0, 2}}
	for z, w := range want {
		if got := zones[z].Responses; got != w {
			t.Errorf("zone %q responses = %v, want %v", z, got, w)
		}
	}
	if got := zones["za"].TargetResponseTime.Count; got != 4 {
		t.Errorf("zone za target response time count = %d, want 4", got)
	}
	if got := zones["zb"].TargetResponseTime.Count; got != 2 {
		t.Errorf("zone zb target response time count = %d, want 2", got)
	}
	if got := zones[""].TargetResponseTime.Count; got != 0 {
		t.Errorf("zone \"\" target response time count = %d, want 0 (no target answered)", got)
	}
	if m.RequestDuration.Count != 7 || m.Stats.Requests != 7 {
		t.Errorf("request duration count %d, requests %d, want 7 and 7", m.RequestDuration.Count, m.Stats.Requests)
	}
	if h := m.RequestDuration; h.Counts[len(h.Counts)-1] > h.Count || h.Sum <= 0 {
		t.Errorf("request duration histogram inconsistent: %+v", h)
	}
	if len(m.Targets) != 1 || m.Targets[0].ID != "b" || m.Targets[0].Responses != (ClassCounts{0, 0, 0, 2}) || m.Targets[0].Zone != "zb" {
		t.Errorf("targets = %+v, want only b (a was removed) with 2 5xx", m.Targets)
	}
	if m.ActiveConnections < 1 {
		t.Errorf("active connections = %d, want ≥ 1 (the client keeps its connection alive)", m.ActiveConnections)
	}

	// A connection error ejects b: counted on b and on zone zb.
	b.srv.Close()
	get(t, c, l.HTTPSURL()+"/")
	m = l.Metrics()
	for deadline := time.Now().Add(2 * time.Second); m.RequestDuration.Count < 8 && time.Now().Before(deadline); m = l.Metrics() {
		time.Sleep(5 * time.Millisecond)
	}
	for _, z := range m.Zones {
		if z.Zone == "zb" && z.Ejections != 1 {
			t.Errorf("zone zb ejections = %d, want 1", z.Ejections)
		}
	}
	if len(m.Targets) != 1 || m.Targets[0].Ejections != 1 {
		t.Errorf("target b ejections: %+v, want 1", m.Targets)
	}
	c.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for l.Metrics().ActiveConnections != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := l.Metrics().ActiveConnections; n != 0 {
		t.Errorf("active connections after the client closed = %d, want 0", n)
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := Histogram{Bounds: []float64{0.1, 1, 10}, Counts: []uint64{90, 99, 100}, Count: 101}
	for _, c := range []struct{ q, want float64 }{{0.5, 0.1}, {0.9, 1}, {0.99, 10}, {1, 10}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN((Histogram{}).Quantile(0.5)) {
		t.Error("Quantile of an empty histogram is not NaN")
	}
}

// BenchmarkMetricsPerRequest is what counting one request costs the load
// balancer's hot path: its class against its target and zone, its target
// response time and its duration (parallel, as requests finish).
func BenchmarkMetricsPerRequest(b *testing.B) {
	var c lbCounters
	t := &target{id: "i-0a", zone: "a", m: c.newTarget("i-0a", "a")}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t.m.zone.ttfb.observe(3 * time.Millisecond)
			c.finish(t, 200, 4*time.Millisecond)
		}
	})
}

// BenchmarkMetricsSnapshot is one Metrics() of a load balancer with 12
// targets, what each scrape and each sampler round reads.
func BenchmarkMetricsSnapshot(b *testing.B) {
	cfg := testConfig(b)
	cfg.TLS, _ = testTLS(b)
	l, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 12 {
		if err := l.Register(Target{ID: fmt.Sprintf("i-%02d", i), Zone: []string{"a", "b"}[i%2], Addr: "127.0.0.1:1"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		_ = l.Metrics()
	}
}
