package alarms

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// Query asks a Source for one statistic of one metric per period.
type Query struct {
	Metric    string
	Statistic Statistic
	Period    time.Duration
	// Start and End bound the periods (Start inclusive, End exclusive);
	// both are multiples of Period since the Unix epoch.
	Start, End time.Time
}

// Source returns datapoints for alarms (CloudWatch's GetMetricData). The
// region implements it with a Store it publishes its metrics into.
type Source interface {
	// Datapoints returns, oldest first, one datapoint for each period in
	// [q.Start, q.End) that holds data, with q.Statistic computed over it.
	// Periods without data are left out: they are missing.
	Datapoints(ctx context.Context, q Query) ([]Datapoint, error)
}

// Sample is one observation of a metric: Value, seen Count times at Time
// (CloudWatch's PutMetricData Values and Counts). A Count of 0 means 1.
type Sample struct {
	Time  time.Time
	Value float64
	Count float64
}

// Defaults of NewStore.
const (
	DefaultRetention  = time.Hour
	DefaultMaxSamples = 200_000
)

// Store keeps recent samples of the registry's metrics in memory and
// computes statistics over them: a Source. It is safe for concurrent use.
type Store struct {
	mu         sync.Mutex
	series     map[string][]Sample // sorted by time
	retention  time.Duration
	maxSamples int
}

// NewStore returns a store keeping, per metric, the samples of the last
// retention (measured back from the newest sample; default 1 h, which covers
// every default alarm's evaluation range) and at most maxSamples (default
// 200,000; the oldest go first).
func NewStore(retention time.Duration, maxSamples int) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	if maxSamples <= 0 {
		maxSamples = DefaultMaxSamples
	}
	return &Store{series: map[string][]Sample{}, retention: retention, maxSamples: maxSamples}
}

// Put records samples of a metric of the registry.
func (s *Store) Put(metric string, samples ...Sample) error {
	if _, ok := LookupMetric(metric); !ok {
		return fmt.Errorf("put %s: unknown metric: the registry has %s", metric, metricNames())
	}
	for _, x := range samples {
		if math.IsNaN(x.Value) || math.IsInf(x.Value, 0) || math.IsNaN(x.Count) || x.Count < 0 || math.IsInf(x.Count, 0) {
			return fmt.Errorf("put %s: value %v count %v: must be finite, count ≥ 0", metric, x.Value, x.Count)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ser := s.series[metric]
	for _, x := range samples {
		if x.Count == 0 {
			x.Count = 1
		}
		if n := len(ser); n == 0 || !x.Time.Before(ser[n-1].Time) {
			ser = append(ser, x)
			continue
		}
		i := sort.Search(len(ser), func(i int) bool { return ser[i].Time.After(x.Time) })
		ser = slices.Insert(ser, i, x)
	}
	if n := len(ser); n > 0 {
		cut := sort.Search(n, func(i int) bool { return !ser[i].Time.Before(ser[n-1].Time.Add(-s.retention)) })
		cut = max(cut, n-s.maxSamples)
		if cut > 0 {
			ser = slices.Clone(ser[cut:])
		}
	}
	s.series[metric] = ser
	return nil
}

// Datapoints computes q.Statistic per period over the stored samples.
func (s *Store) Datapoints(_ context.Context, q Query) ([]Datapoint, error) {
	if q.Period <= 0 {
		return nil, errors.New("datapoints: period must be > 0")
	}
	if !q.Statistic.Valid() {
		return nil, fmt.Errorf("datapoints: unknown statistic %q", q.Statistic)
	}
	if _, ok := LookupMetric(q.Metric); !ok {
		return nil, fmt.Errorf("datapoints: unknown metric %q", q.Metric)
	}
	s.mu.Lock()
	ser := s.series[q.Metric]
	lo := sort.Search(len(ser), func(i int) bool { return !ser[i].Time.Before(q.Start) })
	hi := sort.Search(len(ser), func(i int) bool { return !ser[i].Time.Before(q.End) })
	in := slices.Clone(ser[lo:hi])
	s.mu.Unlock()

	var out []Datapoint
	for i := 0; i < len(in); {
		p := alignDown(in[i].Time, q.Period)
		j := i
		for j < len(in) && alignDown(in[j].Time, q.Period).Equal(p) {
			j++
		}
		v, n := statistic(q.Statistic, in[i:j])
		out = append(out, Datapoint{Timestamp: p, Value: v, SampleCount: n})
		i = j
	}
	return out, nil
}

// statistic computes st over samples (at least one) and returns it with the
// sample count.
func statistic(st Statistic, samples []Sample) (float64, float64) {
	var n, sum float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range samples {
		n += x.Count
		sum += x.Value * x.Count
		lo, hi = min(lo, x.Value), max(hi, x.Value)
	}
	switch st {
	case Average:
		return sum / n, n
	case Sum:
		return sum, n
	case Minimum:
		return lo, n
	case Maximum:
		return hi, n
	case SampleCount:
		return n, n
	}
	p, _ := st.Percentile()
	return percentile(samples, p, n), n
}

// percentile is the nearest-rank percentile of weighted samples: the
// smallest value with at least p % of the samples at or below it.
func percentile(samples []Sample, p, n float64) float64 {
	s := slices.Clone(samples)
	slices.SortFunc(s, func(a, b Sample) int { return cmpFloat(a.Value, b.Value) })
	rank := math.Ceil(p / 100 * n)
	var cum float64
	for _, x := range s {
		cum += x.Count
		if cum >= rank {
			return x.Value
		}
	}
	return s[len(s)-1].Value
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
