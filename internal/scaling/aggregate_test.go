package scaling

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCPUPercent(t *testing.T) {
	for _, tc := range []struct {
		usage, wall time.Duration
		cores       float64
		want        float64
	}{
		{50 * time.Millisecond, time.Second, 0.1, 50},
		{250 * time.Millisecond, time.Second, 0.25, 100},
		{0, time.Second, 0.25, 0},
		{time.Second, 2 * time.Second, 1, 50},
	} {
		if got := CPUPercent(tc.usage, tc.wall, tc.cores); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("CPUPercent(%v, %v, %g) = %g, want %g", tc.usage, tc.wall, tc.cores, got, tc.want)
		}
	}
	if !math.IsNaN(CPUPercent(time.Second, time.Second, 0)) || !math.IsNaN(CPUPercent(time.Second, 0, 1)) {
		t.Fatal("CPUPercent without a quota or an interval must be NaN")
	}
}

func TestWarming(t *testing.T) {
	now := t0
	insts := []InstanceState{
		{ID: "pending"},
		{ID: "new", InService: true, InServiceSince: now.Add(-30 * time.Second)},
		{ID: "warm", InService: true, InServiceSince: now.Add(-2 * time.Minute)},
		{ID: "old", InService: true},
	}
	if got := Warming(insts, time.Minute, now); got != 2 {
		t.Fatalf("Warming = %d, want 2 (pending and new)", got)
	}
}

func TestAggregatorCountsOnlyInServiceInstancesPastWarmup(t *testing.T) {
	a := NewAggregator(10*time.Second, time.Minute, 5)
	start := t0 // period-aligned
	for s := 1; s <= 10; s++ {
		at := start.Add(time.Duration(s) * time.Second)
		a.Add(Sample{Instance: "old", At: at, InService: true, InServiceSince: start.Add(-time.Hour), CPU: 80, Requests: 6})
		a.Add(Sample{Instance: "warming", At: at, InService: true, InServiceSince: start.Add(-30 * time.Second), CPU: 5, Requests: 1})
		a.Add(Sample{Instance: "pending", At: at, CPU: 100, Requests: 0})
	}
	now := start.Add(10 * time.Second)
	cpu := a.Datapoints(CPUUtilization, now)
	last := cpu[len(cpu)-1]
	if !last.Start.Equal(start) || last.Instances != 1 || math.Abs(last.Value-80) > 1e-9 {
		t.Fatalf("cpu datapoint = %+v, want 80 %% from 1 instance starting %v", last, start)
	}
	req := a.Datapoints(RequestCountPerTarget, now)
	if got := req[len(req)-1].Value; math.Abs(got-360) > 1e-9 {
		t.Fatalf("requests per target per minute = %g, want 6/s × 60 = 360", got)
	}
	// Earlier kept periods have no data.
	for _, dp := range cpu[:len(cpu)-1] {
		if dp.Instances != 0 || !math.IsNaN(dp.Value) {
			t.Fatalf("empty period = %+v", dp)
		}
	}
	if len(cpu) != 5 {
		t.Fatalf("%d datapoints, want the 5 kept periods", len(cpu))
	}
}

func TestAggregatorWarmupEndsMidPeriod(t *testing.T) {
	a := NewAggregator(10*time.Second, 5*time.Second, 3)
	since := t0.Add(-5 * time.Second) // past warmup from t0 on
	for s := 1; s <= 10; s++ {
		at := t0.Add(time.Duration(s-5) * time.Second) // samples from t0-5s to t0+5s
		a.Add(Sample{Instance: "i", At: at, InService: true, InServiceSince: since, CPU: float64(s)})
	}
	dps := a.Datapoints(CPUUtilization, t0.Add(10*time.Second))
	last := dps[len(dps)-1]
	// Samples whose interval starts at or after t0 count: s = 6..10.
	if last.Instances != 1 || math.Abs(last.Value-8) > 1e-9 {
		t.Fatalf("datapoint = %+v, want the mean of 6..10 = 8", last)
	}
}

func TestAggregatorTimeWeightsAndSkipsUnmeasuredCPU(t *testing.T) {
	a := NewAggregator(time.Minute, 0, 3)
	a.Add(Sample{Instance: "a", At: t0.Add(3 * time.Second), Interval: 3 * time.Second, InService: true, CPU: 10, Requests: 30})
	a.Add(Sample{Instance: "a", At: t0.Add(4 * time.Second), InService: true, CPU: 90, Requests: 10})
	a.Add(Sample{Instance: "b", At: t0.Add(4 * time.Second), InService: true, CPU: math.NaN(), Requests: 20})
	now := t0.Add(time.Minute)
	cpu := a.Datapoints(CPUUtilization, now)
	if got := cpu[len(cpu)-1]; got.Instances != 1 || math.Abs(got.Value-30) > 1e-9 {
		t.Fatalf("cpu = %+v, want (10×3+90×1)/4 = 30 from 1 instance", got)
	}
	req := a.Datapoints(RequestCountPerTarget, now)
	if got := req[len(req)-1]; got.Instances != 2 || math.Abs(got.Value-60*60.0/5) > 1e-9 {
		t.Fatalf("requests = %+v, want 60 requests over 5 instance-seconds ×60 = 720", got)
	}
	// The open period is not reported.
	if dps := a.Datapoints(CPUUtilization, t0.Add(30*time.Second)); dps[len(dps)-1].Start.Equal(t0) {
		t.Fatal("reported a period that has not closed")
	}
}

func TestAggregatorDropsSamplesOlderThanItKeeps(t *testing.T) {
	a := NewAggregator(10*time.Second, 0, 2)
	a.Add(Sample{Instance: "a", At: t0.Add(31 * time.Second), InService: true, CPU: 50})
	a.Add(Sample{Instance: "a", At: t0.Add(11 * time.Second), InService: true, CPU: 99}) // same ring slot, older
	dps := a.Datapoints(CPUUtilization, t0.Add(40*time.Second))
	if got := dps[len(dps)-1]; got.Value != 50 {
		t.Fatalf("newest period = %+v", got)
	}
	if a.Datapoints("Memory", t0) != nil {
		t.Fatal("unknown metric returned datapoints")
	}
}

// BenchmarkSampleAggregate measures the scaler's per-sample cost: one
// instance's one-second sample turned into CPU utilisation and added, plus
// its share of the datapoint reads each period. ns/op is the cost per
// instance per second.
func BenchmarkSampleAggregate(b *testing.B) {
	const instances = 12
	period := 10 * time.Second
	a := NewAggregator(period, 20*time.Second, 20)
	ids := make([]string, instances)
	for i := range ids {
		ids[i] = "i-" + strconv.Itoa(i)
	}
	since := t0.Add(-time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		sec := n / instances
		at := t0.Add(time.Duration(sec+1) * time.Second)
		cpu := CPUPercent(time.Duration(n%250)*time.Millisecond, time.Second, 0.25)
		a.Add(Sample{Instance: ids[n%instances], At: at, InService: true, InServiceSince: since, CPU: cpu, Requests: float64(n % 40)})
		if n%(instances*int(period/time.Second)) == 0 {
			a.Datapoints(CPUUtilization, at)
			a.Datapoints(RequestCountPerTarget, at)
		}
	}
}

// BenchmarkReadCgroupCPUUsage measures the I/O half of sampling: reading one
// cgroup's CPU usage counter (cgroup v2 cpu.stat, or v1 cpuacct.usage) of
// this process's own cgroup. The sampler (wired later) reads one such file
// per instance per second.
func BenchmarkReadCgroupCPUUsage(b *testing.B) {
	path := ""
	for _, p := range []string{"/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"} {
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		b.Skip("no cgroup CPU accounting file on this machine")
	}
	b.ReportAllocs()
	for n := 0; n < b.N; n++ {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		s := string(data)
		if i := strings.Index(s, "usage_usec "); i >= 0 {
			s = s[i+len("usage_usec "):]
		}
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			s = s[:j]
		}
		if _, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err != nil {
			b.Fatalf("parse %s: %v", path, err)
		}
	}
}
