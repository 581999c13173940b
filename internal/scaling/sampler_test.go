package scaling

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// fakeFleet is a FleetReader, CPUReader and RequestReader whose counters
// the test moves by hand.
type fakeFleet struct {
	mu    sync.Mutex
	cap   Capacity
	insts []InstanceState
	cpu   map[string]time.Duration
	reqs  map[string]uint64
}

func (f *fakeFleet) Capacity() Capacity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cap
}

func (f *fakeFleet) Instances() []InstanceState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]InstanceState(nil), f.insts...)
}

func (f *fakeFleet) CPUUsage(id string) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.cpu[id]
	if !ok {
		return 0, errors.New("no such cgroup")
	}
	return u, nil
}

func (f *fakeFleet) RequestCounts() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range f.reqs {
		out[k] = v
	}
	return out
}

// advance adds one second of work: cpu of CPU time and n requests per instance.
func (f *fakeFleet) advance(cpu time.Duration, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range f.insts {
		if in.InService {
			f.cpu[in.ID] += cpu
			f.reqs[in.ID] += n
		}
	}
}

func newFakeFleet(now time.Time) *fakeFleet {
	return &fakeFleet{
		cap: Capacity{Min: 2, Max: 6, Desired: 3},
		insts: []InstanceState{
			{ID: "i-old1", InService: true, InServiceSince: now.Add(-time.Hour)},
			{ID: "i-old2", InService: true, InServiceSince: now.Add(-time.Hour)},
			{ID: "i-new", InService: true, InServiceSince: now.Add(-5 * time.Second)}, // warming
			{ID: "i-pending"}, // launched, not in service
		},
		cpu:  map[string]time.Duration{"i-old1": 0, "i-old2": 0, "i-new": 0, "i-pending": 0},
		reqs: map[string]uint64{},
	}
}

// TestSamplerTurnsCountersIntoDatapoints: CPU time over the quota becomes
// CPUUtilization, routed requests become RequestCountPerTarget per minute,
// warming instances count toward capacity but not the metrics, and pending
// ones are not sampled.
func TestSamplerTurnsCountersIntoDatapoints(t *testing.T) {
	start := t0.Truncate(10 * time.Second)
	clk := clock.NewFake(start)
	f := newFakeFleet(start)
	s, err := NewSampler(SamplerConfig{Fleet: f, CPU: f, Cores: 0.1, Requests: f, Period: 10 * time.Second, Warmup: 30 * time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	s.Sample(clk.Now()) // first readings: no rate yet
	for i := 0; i < 20; i++ {
		f.advance(60*time.Millisecond, 5) // 60 ms of a 0.1-CPU quota: 60 %; 5 requests per second
		clk.Advance(time.Second)
		s.Sample(clk.Now())
	}
	r := s.Readings()
	if len(r.Instances) != 3 || r.Instances["i-pending"] != (InstanceReading{}) {
		t.Fatalf("readings = %+v, want the 3 in-service instances only", r.Instances)
	}
	if got := r.Instances["i-old1"]; math.Abs(got.CPU-60) > 1e-6 || math.Abs(got.RPS-5) > 1e-9 || got.Warming {
		t.Errorf("i-old1 reading = %+v, want 60 %% CPU, 5 rps, not warming", got)
	}
	if !r.Instances["i-new"].Warming || math.Abs(r.AvgCPU-60) > 1e-6 || !r.CPUAccounting {
		t.Errorf("readings = %+v, want i-new warming and an average of 60 %%", r)
	}
	c, obs, err := s.Observe(context.Background(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c != f.cap || obs.Warming != 2 {
		t.Errorf("observed capacity %v, warming %d; want %v and 2 (i-new, i-pending)", c, obs.Warming, f.cap)
	}
	cpu := obs.Datapoints[CPUUtilization]
	last := cpu[len(cpu)-1]
	// Only the two instances past warmup count.
	if last.Instances != 2 || math.Abs(last.Value-60) > 1e-6 || math.Abs(last.Serving-3) > 1e-6 {
		t.Errorf("last CPU datapoint = %+v, want 60 %% from 2 instances, serving 3", last)
	}
	req := obs.Datapoints[RequestCountPerTarget]
	if last := req[len(req)-1]; last.Instances != 2 || math.Abs(last.Value-300) > 1e-6 {
		t.Errorf("last request datapoint = %+v, want 300 per target per minute from 2 instances", last)
	}
}

// TestSamplerWithoutCPUAccounting: no CPU reader means no CPU data (so the
// CPU policy holds), while request counts still flow.
func TestSamplerWithoutCPUAccounting(t *testing.T) {
	start := t0.Truncate(10 * time.Second)
	clk := clock.NewFake(start)
	f := newFakeFleet(start)
	s, err := NewSampler(SamplerConfig{Fleet: f, Requests: f, Period: 10 * time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= 20; i++ {
		s.Sample(clk.Now())
		f.advance(90*time.Millisecond, 7)
		clk.Advance(time.Second)
	}
	_, obs, _ := s.Observe(context.Background(), clk.Now())
	for _, dp := range obs.Datapoints[CPUUtilization] {
		if dp.Instances != 0 {
			t.Fatalf("CPU datapoint with data without a CPU reader: %+v", dp)
		}
	}
	req := obs.Datapoints[RequestCountPerTarget]
	if last := req[len(req)-1]; last.Instances != 3 || math.Abs(last.Value-420) > 1e-6 {
		t.Errorf("last request datapoint = %+v, want 420 from 3 instances", last)
	}
	if r := s.Readings(); r.CPUAccounting || !math.IsNaN(r.AvgCPU) {
		t.Errorf("readings = %+v, want no CPU accounting and no average", r)
	}
	cfg, dropped := Config{Policies: []Policy{cpuPolicy(50), {Name: "req", Metric: RequestCountPerTarget, Target: 300}}}.Without(CPUUtilization)
	if len(cfg.Policies) != 1 || cfg.Policies[0].Name != "req" || len(dropped) != 1 || dropped[0] != "cpu" {
		t.Errorf("Without(CPU) = %+v, dropped %v", cfg.Policies, dropped)
	}
}

func TestNewSamplerRejectsBadConfig(t *testing.T) {
	f := newFakeFleet(t0)
	_, err := NewSampler(SamplerConfig{CPU: f, Warmup: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "fleet: must be set") || !strings.Contains(err.Error(), "cores") || !strings.Contains(err.Error(), "warmup") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkSamplerPerInstance measures the sampler's own cost per instance
// per second (listing, differencing, aggregating, publishing) with counters
// in memory; BenchmarkReadCgroupCPUUsage measures the file read it adds per
// instance.
func BenchmarkSamplerPerInstance(b *testing.B) {
	const n = 12
	start := t0.Truncate(10 * time.Second)
	f := &fakeFleet{cap: Capacity{Min: 2, Max: 12, Desired: n}, cpu: map[string]time.Duration{}, reqs: map[string]uint64{}}
	for i := 0; i < n; i++ {
		id := "i-" + string(rune('a'+i))
		f.insts = append(f.insts, InstanceState{ID: id, InService: true, InServiceSince: start.Add(-time.Hour)})
		f.cpu[id] = 0
	}
	s, err := NewSampler(SamplerConfig{Fleet: f, CPU: f, Cores: 0.1, Requests: f, Period: 3 * time.Second, Warmup: 6 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	now := start
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		f.advance(50*time.Millisecond, 10)
		now = now.Add(time.Second)
		s.Sample(now)
	}
}
