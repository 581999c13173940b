package alarms

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

func TestStoreStatisticsPerPeriod(t *testing.T) {
	s := NewStore(0, 0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	// Period 1: 1, 2, 3, and 10 seen 2 times. Period 2: nothing. Period 3: 7.
	must(t, s.Put(MetricReplicaLag, Sample{Time: at(5), Value: 3}, Sample{Time: at(1), Value: 1}, Sample{Time: at(30), Value: 10, Count: 2}, Sample{Time: at(3), Value: 2}))
	must(t, s.Put(MetricReplicaLag, Sample{Time: at(125), Value: 7}))
	want := map[Statistic][]float64{
		Average: {(1 + 2 + 3 + 20) / 5.0, 7}, Sum: {26, 7}, Minimum: {1, 7}, Maximum: {10, 7},
		SampleCount: {5, 1}, "p50": {3, 7}, "p60": {3, 7}, "p61": {10, 7}, "p99": {10, 7}, "p100": {10, 7},
	}
	for st, w := range want {
		dps, err := s.Datapoints(context.Background(), Query{Metric: MetricReplicaLag, Statistic: st, Period: time.Minute, Start: t0, End: t0.Add(3 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if len(dps) != 2 || !dps[0].Timestamp.Equal(t0) || !dps[1].Timestamp.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("%s: datapoints %+v, want periods 0 and 2 (period 1 is missing)", st, dps)
		}
		if dps[0].Value != w[0] || dps[1].Value != w[1] || dps[0].SampleCount != 5 {
			t.Errorf("%s: got %v/%v (n %v), want %v", st, dps[0].Value, dps[1].Value, dps[0].SampleCount, w)
		}
	}
	// Query bounds are [Start, End).
	dps, _ := s.Datapoints(context.Background(), Query{Metric: MetricReplicaLag, Statistic: Sum, Period: time.Minute, Start: t0.Add(time.Minute), End: t0.Add(2 * time.Minute)})
	if len(dps) != 0 {
		t.Errorf("empty period returned %+v", dps)
	}
}

func TestStoreFivexxPercentIsTheAverage(t *testing.T) {
	s := NewStore(0, 0)
	// 3 of 60 requests answered 5xx in the first second, 1 of 40 in the next.
	must(t, s.Put(MetricHTTP5XXPercent, Sample{Time: t0, Value: 100, Count: 3}, Sample{Time: t0, Value: 0, Count: 57},
		Sample{Time: t0.Add(time.Second), Value: 100, Count: 1}, Sample{Time: t0.Add(time.Second), Value: 0, Count: 39}))
	dps, err := s.Datapoints(context.Background(), Query{Metric: MetricHTTP5XXPercent, Statistic: Average, Period: time.Minute, Start: t0, End: t0.Add(time.Minute)})
	if err != nil || len(dps) != 1 || math.Abs(dps[0].Value-4) > 1e-9 {
		t.Fatalf("got %+v %v, want 4 %% (4 of 100)", dps, err)
	}
}

func TestStoreRejectsBadInputAndBoundsMemory(t *testing.T) {
	s := NewStore(10*time.Second, 5)
	if err := s.Put("HealthyHosts", Sample{Time: t0, Value: 1}); err == nil || !strings.Contains(err.Error(), "unknown metric") || !strings.Contains(err.Error(), MetricHealthyHostCount) {
		t.Errorf("unknown metric: %v", err)
	}
	if err := s.Put(MetricReplicaLag, Sample{Time: t0, Value: math.NaN()}); err == nil {
		t.Error("NaN accepted")
	}
	if err := s.Put(MetricReplicaLag, Sample{Time: t0, Value: 1, Count: -1}); err == nil {
		t.Error("negative count accepted")
	}
	for i := 0; i < 20; i++ {
		must(t, s.Put(MetricReplicaLag, Sample{Time: t0.Add(time.Duration(i) * time.Second), Value: float64(i)}))
	}
	s.mu.Lock()
	kept := s.series[MetricReplicaLag]
	s.mu.Unlock()
	if len(kept) != 5 || kept[0].Value != 15 {
		t.Errorf("kept %d samples from %v, want the newest 5", len(kept), kept[0].Value)
	}
	must(t, s.Put(MetricReplicaLag, Sample{Time: t0.Add(time.Hour), Value: 1}))
	s.mu.Lock()
	kept = s.series[MetricReplicaLag]
	s.mu.Unlock()
	if len(kept) != 1 {
		t.Errorf("kept %d samples after an hour, want only the one within retention", len(kept))
	}
	if _, err := s.Datapoints(context.Background(), Query{Metric: MetricReplicaLag, Statistic: "p101", Period: time.Minute}); err == nil {
		t.Error("p101 accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
