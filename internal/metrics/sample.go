package metrics

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/clock"
)

// Defaults of a SamplerConfig.
const (
	DefaultSampleInterval = time.Second
	DefaultKeep           = 15 * time.Minute
)

// SamplerConfig configures a Sampler. Gatherer is required.
type SamplerConfig struct {
	// Gatherer is the tiers' registry (Metrics.Gatherer): the sampler reads
	// the very families /metrics serves.
	Gatherer prometheus.Gatherer
	// Store receives the alarm registry's samples (alarms.Metrics). Default
	// none: only the chart series are kept.
	Store *alarms.Store
	// Interval is the time between two rounds. Default 1 s. Counter
	// metrics (RequestCount, the 5xx counts, DatabaseFailovers) are sampled
	// as their increase over the interval, so a period's Sum is exact
	// whatever the interval.
	Interval time.Duration
	// Keep is how much chart history Series holds. Default 15 min.
	Keep time.Duration
	// Clock drives the loop and stamps every sample. Default clock.Real.
	Clock clock.Clock
	// Logger receives the sampler's logs (component "metrics"). Default
	// slog.Default().
	Logger *slog.Logger
}

// Point is one round of the chart series. A NaN field had no data (the
// tier was not running, nothing was answered).
type Point struct {
	Time time.Time
	// Requests and Errors5xx are per second over the round (the load
	// balancer's responses, and its 5xx ones: its own and its targets').
	Requests, Errors5xx float64
	// P99 is the 99th percentile of target response time over the round,
	// in seconds (a histogram bucket's upper bound).
	P99 float64
	// InService is the fleet's in-service instances; Healthy the healthy
	// targets behind the load balancer.
	InService, Healthy float64
	// CPU is the instances' average CPU utilisation over the round, in
	// percent of their quota.
	CPU float64
	// ReplicationLag is the standby's replay lag in seconds.
	ReplicationLag float64
}

// Sampler reads the tiers' metric families every Interval and turns them
// into the alarm registry's samples (CloudWatch's PutMetricData) and the
// console's chart series. It is safe for concurrent use.
type Sampler struct {
	cfg SamplerConfig
	clk clock.Clock
	log *slog.Logger

	mu      sync.Mutex // one round at a time
	prev    map[string]float64
	prevAt  time.Time
	lastErr string
	series  atomic.Pointer[[]Point]
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewSampler returns a sampler that is not running yet.
func NewSampler(cfg SamplerConfig) (*Sampler, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("new sampler: gatherer: must be set")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSampleInterval
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sampler{cfg: cfg, clk: clock.Or(cfg.Clock), log: cfg.Logger.With("component", "metrics")}, nil
}

// Start runs a round every Interval until Stop or ctx ends.
func (s *Sampler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("start sampler: already started")
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		for {
			s.safeSample()
			select {
			case <-ctx.Done():
				return
			case <-s.clk.After(s.cfg.Interval):
			}
		}
	}(s.done)
	return nil
}

// Stop ends the loop and waits for it, or for ctx.
func (s *Sampler) Stop(ctx context.Context) error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sampler) safeSample() {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("metrics sample panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.Sample()
}

// Series returns the chart points of the last Keep, oldest first. It never
// waits on a round.
func (s *Sampler) Series() []Point {
	if p := s.series.Load(); p != nil {
		return slices.Clone(*p)
	}
	return []Point{}
}

// families indexes a gather by metric name.
type families map[string]*dto.MetricFamily

func (f families) has(name string) bool { return f[name] != nil }

// each calls fn with every metric of name whose labels match (every pair
// of match is name=value; a value "" matches any).
func (f families) each(name string, fn func(m *dto.Metric, labels map[string]string)) {
	mf := f[name]
	if mf == nil {
		return
	}
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		fn(m, labels)
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

// sum adds the values of name's metrics whose labels satisfy keep (nil: all).
func (f families) sum(name string, keep func(map[string]string) bool) float64 {
	var t float64
	f.each(name, func(m *dto.Metric, l map[string]string) {
		if keep == nil || keep(l) {
			t += value(m)
		}
	})
	return t
}

func key(name string, l map[string]string) string {
	ks := make([]string, 0, len(l))
	for k, v := range l {
		ks = append(ks, k+"="+v)
	}
	sort.Strings(ks)
	return name + "{" + strings.Join(ks, ",") + "}"
}

// round is one sample's view with the previous one, for increases.
type round struct {
	f    families
	prev map[string]float64 // nil on the first round: no increase yet
	next map[string]float64
}

// increase returns how much the counters of name matching keep grew since
// the previous round, series by series: a series that went down was reset
// (the daemon or the tier restarted) and counts from zero; a new series
// counts from zero; a vanished one is ignored. ok is false on the first
// round.
func (r *round) increase(name string, keep func(map[string]string) bool) (float64, bool) {
	var inc float64
	r.f.each(name, func(m *dto.Metric, l map[string]string) {
		if keep != nil && !keep(l) {
			return
		}
		k, v := key(name, l), value(m)
		r.next[k] = v
		if p, ok := r.prev[k]; ok && v >= p {
			inc += v - p
		} else {
			inc += v
		}
	})
	return inc, r.prev != nil
}

// bucketIncrease returns the increase of each bucket of the histogram
// family name (summed over its series) since the previous round, as
// (upper bound, count) pairs, the +Inf bucket's counted at the last finite
// bound.
func (r *round) bucketIncrease(name string) []alarms.Sample {
	cums := map[float64]float64{}
	var bounds []float64
	var infCount float64
	r.f.each(name, func(m *dto.Metric, l map[string]string) {
		h := m.GetHistogram()
		if h == nil {
			return
		}
		kc := key(name+"_count", l)
		cnt := float64(h.GetSampleCount())
		pc, had := r.prev[kc]
		r.next[kc] = cnt
		if had && cnt < pc {
			had = false // reset
		}
		for _, b := range h.GetBucket() {
			ub := b.GetUpperBound()
			kb := key(name+"_bucket", l) + "le=" + formatFloat(ub)
			c := float64(b.GetCumulativeCount())
			r.next[kb] = c
			p := 0.0
			if had {
				p = r.prev[kb]
			}
			if _, seen := cums[ub]; !seen {
				bounds = append(bounds, ub)
			}
			cums[ub] += c - p
		}
		if had {
			infCount += cnt - pc
		} else {
			infCount += cnt
		}
	})
	if r.prev == nil || len(bounds) == 0 {
		return nil
	}
	sort.Float64s(bounds)
	var out []alarms.Sample
	var below float64
	for _, b := range bounds {
		n := cums[b] - below
		below = cums[b]
		if n > 0 {
			out = append(out, alarms.Sample{Value: b, Count: n})
		}
	}
	if n := infCount - below; n > 0 {
		out = append(out, alarms.Sample{Value: bounds[len(bounds)-1], Count: n})
	}
	return out
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Sample runs one round now: it gathers the tiers' families, puts the
// alarm registry's samples into the Store and appends a chart point. The
// first round only sets the baseline of the counters.
func (s *Sampler) Sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now().UTC()
	mfs, err := s.cfg.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		if s.lastErr != err.Error() {
			s.log.Warn("gather metrics", "err", err)
		}
		s.lastErr = err.Error()
		return
	}
	s.lastErr = ""
	f := families{}
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	r := &round{f: f, prev: s.prev, next: map[string]float64{}}
	elapsed := s.cfg.Interval.Seconds()
	if !s.prevAt.IsZero() {
		elapsed = now.Sub(s.prevAt).Seconds()
	}
	pt := Point{Time: now, Requests: math.NaN(), Errors5xx: math.NaN(), P99: math.NaN(), InService: math.NaN(),
		Healthy: math.NaN(), CPU: math.NaN(), ReplicationLag: math.NaN()}
	put := func(metric string, samples ...alarms.Sample) {
		if s.cfg.Store == nil || len(samples) == 0 {
			return
		}
		for i := range samples {
			samples[i].Time = now
		}
		if err := s.cfg.Store.Put(metric, samples...); err != nil {
			s.log.Error("put alarm samples", "metric", metric, "err", err)
		}
	}
	state := func(want string) func(map[string]string) bool {
		return func(l map[string]string) bool { return l["state"] == want }
	}

	if f.has(NameLBUp) {
		healthy := f.sum(NameLBTargets, state("healthy"))
		put(alarms.MetricHealthyHostCount, alarms.Sample{Value: healthy})
		put(alarms.MetricUnHealthyHostCount, alarms.Sample{Value: f.sum(NameLBTargets, state("unhealthy"))})
		pt.Healthy = healthy
		reqs, ok := r.increase(NameLBRequests, nil)
		fivexx, _ := r.increase(NameLBRequests, func(l map[string]string) bool { return l["code"] == "5xx" })
		elb5xx, _ := r.increase(NameLBELBResponses, nil)
		ttfb := r.bucketIncrease(NameLBTargetResponseTime)
		if ok {
			put(alarms.MetricRequestCount, alarms.Sample{Value: reqs})
			put(alarms.MetricHTTPCodeELB5XXCount, alarms.Sample{Value: elb5xx})
			put(alarms.MetricHTTPCodeTarget5XXCount, alarms.Sample{Value: max(fivexx-elb5xx, 0)})
			if reqs > 0 {
				var ss []alarms.Sample
				if fivexx > 0 {
					ss = append(ss, alarms.Sample{Value: 100, Count: fivexx})
				}
				if reqs-fivexx > 0 {
					ss = append(ss, alarms.Sample{Value: 0, Count: reqs - fivexx})
				}
				put(alarms.MetricHTTP5XXPercent, ss...)
			}
			put(alarms.MetricTargetResponseTime, ttfb...)
			if elapsed > 0 {
				pt.Requests, pt.Errors5xx = reqs/elapsed, fivexx/elapsed
			}
			pt.P99 = p99(ttfb)
		}
	}
	if f.has(NameFleetDesired) {
		inService := f.sum(NameFleetInstances, state("in-service"))
		maxSize := f.sum(NameFleetMax, nil)
		put(alarms.MetricGroupInService, alarms.Sample{Value: inService})
		put(alarms.MetricGroupDesiredCapacity, alarms.Sample{Value: f.sum(NameFleetDesired, nil)})
		put(alarms.MetricGroupMinSize, alarms.Sample{Value: f.sum(NameFleetMin, nil)})
		put(alarms.MetricGroupMaxSize, alarms.Sample{Value: maxSize})
		atMax := 0.0
		if inService >= maxSize {
			atMax = 1
		}
		put(alarms.MetricGroupAtMaxSize, alarms.Sample{Value: atMax})
		pt.InService = inService
		cpu, ok := r.increase(NameInstanceCPU, nil)
		n := float64(len(f[NameInstanceCPU].GetMetric()))
		if limit := f.sum(NameInstanceCPULimit, nil); ok && n > 0 && limit > 0 && elapsed > 0 {
			pt.CPU = 100 * cpu / elapsed / limit / n
		}
	}
	if f.has(NameDBUp) {
		if f.has(NameDBConnections) {
			put(alarms.MetricDatabaseConnections, alarms.Sample{Value: f.sum(NameDBConnections, nil)})
		}
		fo, ok := r.increase(NameDBFailovers, nil)
		so, _ := r.increase(NameDBSwitchovers, nil)
		if ok {
			put(alarms.MetricDatabaseFailovers, alarms.Sample{Value: fo + so})
		}
		if f.has(NameDBReplicationLag) {
			lag := f.sum(NameDBReplicationLag, nil)
			put(alarms.MetricReplicaLag, alarms.Sample{Value: lag})
			pt.ReplicationLag = lag
		}
	}
	s.prev, s.prevAt = r.next, now

	old := s.Series()
	cut := sort.Search(len(old), func(i int) bool { return !old[i].Time.Before(now.Add(-s.cfg.Keep)) })
	pts := append(old[cut:], pt)
	s.series.Store(&pts)
}

// p99 is the nearest-rank 99th percentile of weighted samples; NaN when
// there are none.
func p99(ss []alarms.Sample) float64 {
	var n float64
	for _, x := range ss {
		n += x.Count
	}
	if n == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(ss)
	slices.SortFunc(sorted, func(a, b alarms.Sample) int {
		switch {
		case a.Value < b.Value:
			return -1
		case a.Value > b.Value:
			return 1
		}
		return 0
	})
	rank := math.Ceil(0.99 * n)
	var cum float64
	for _, x := range sorted {
		cum += x.Count
		if cum >= rank {
			return x.Value
		}
	}
	return sorted[len(sorted)-1].Value
}
