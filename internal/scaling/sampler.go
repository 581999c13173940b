package scaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// FleetReader is what the sampler reads of the fleet: its capacity and the
// instances that count toward it.
type FleetReader interface {
	// Capacity is the group's min, max and desired capacity now.
	Capacity() Capacity
	// Instances lists the instances that count toward capacity: pending
	// ones and in-service ones (not those draining or terminating).
	Instances() []InstanceState
}

// CPUReader reads the CPU time an instance has used since it started: its
// cgroup's counter (cgroup.Manager.CPUUsage).
type CPUReader interface {
	CPUUsage(id string) (time.Duration, error)
}

// RequestReader returns how many requests the load balancer has routed to
// each target since it was registered, by instance id.
type RequestReader interface {
	RequestCounts() map[string]uint64
}

// SamplerConfig configures a Sampler. Fleet is required.
type SamplerConfig struct {
	// Fleet is the group the sampler reads. Required.
	Fleet FleetReader
	// CPU reads each instance's CPU time. Default nil: no CPU accounting,
	// so CPUUtilization has no data and only RequestCountPerTarget can
	// drive scaling.
	CPU CPUReader
	// Cores is each instance's CPU quota in cores: 100 % CPU utilisation
	// is Cores × wall time. Required with CPU.
	Cores float64
	// Requests reads the load balancer's per-target counters. Default nil:
	// RequestCountPerTarget has no data.
	Requests RequestReader
	// Period is the datapoint period. Default DefaultPeriod.
	Period time.Duration
	// Warmup is the instance warmup: samples of an instance that entered
	// service less than Warmup ago do not count. Default 0.
	Warmup time.Duration
	// Keep is how many periods the aggregator keeps. Default 20.
	Keep int
	// Interval is the time between samples. Default 1s.
	Interval time.Duration
	// Clock drives the sampler. Default clock.Real.
	Clock clock.Clock
	// Logger receives the sampler's logs. Default slog.Default().
	Logger *slog.Logger
}

// InstanceReading is one instance's latest one-interval reading.
type InstanceReading struct {
	// CPU is its CPU utilisation in percent of its quota; NaN when unknown.
	CPU float64
	// RPS is the requests routed to it per second.
	RPS float64
	// InService and Warming say whether it counted, and whether it was
	// still within warmup (counted toward capacity, not the metrics).
	InService, Warming bool
}

// Readings are the sampler's latest readings, published for status views.
type Readings struct {
	// At is when they were taken (zero: never).
	At time.Time
	// Instances holds each instance's reading by id.
	Instances map[string]InstanceReading
	// AvgCPU is the average CPU utilisation of the in-service instances,
	// in percent of their quota; NaN when unknown.
	AvgCPU float64
	// CPUAccounting is false when the sampler has no CPU reader.
	CPUAccounting bool
}

// Sampler samples every instance once per Interval, as CloudWatch collects an
// Auto Scaling group's metrics: CPU time from each instance's cgroup, requests
// from the load balancer's per-target counters. It feeds an Aggregator and is
// the scaling Loop's Source. The platform samples; the app is never asked.
type Sampler struct {
	cfg  SamplerConfig
	log  *slog.Logger
	snap atomic.Pointer[Readings]

	mu   sync.Mutex // guards agg and prev
	agg  *Aggregator
	prev map[string]reading

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// reading is one instance's counters at one moment.
type reading struct {
	at       time.Time
	cpu      time.Duration
	cpuOK    bool
	requests uint64
	reqOK    bool
}

var (
	_ Source = (*Sampler)(nil)
	_ interface {
		Start(context.Context) error
		Stop(context.Context) error
	} = (*Sampler)(nil)
)

// NewSampler validates cfg and returns a sampler that is not yet running.
func NewSampler(cfg SamplerConfig) (*Sampler, error) {
	var errs []error
	if cfg.Fleet == nil {
		errs = append(errs, errors.New("fleet: must be set"))
	}
	if cfg.CPU != nil && !(cfg.Cores > 0) {
		errs = append(errs, fmt.Errorf("cores: must be > 0 with a CPU reader, got %g", cfg.Cores))
	}
	if cfg.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup: must be ≥ 0, got %s", cfg.Warmup))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new sampler: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sampler{
		cfg: cfg, log: cfg.Logger.With("component", "scaling"),
		agg: NewAggregator(cfg.Period, cfg.Warmup, cfg.Keep), prev: map[string]reading{},
	}
	s.snap.Store(&Readings{Instances: map[string]InstanceReading{}, AvgCPU: math.NaN(), CPUAccounting: cfg.CPU != nil})
	return s, nil
}

// Sample reads every instance once and adds one sample per instance that has
// a previous reading (a rate needs two). It is what the running sampler
// does every Interval; tests call it on a fake clock.
func (s *Sampler) Sample(now time.Time) {
	insts := s.cfg.Fleet.Instances()
	var counts map[string]uint64
	if s.cfg.Requests != nil {
		counts = s.cfg.Requests.RequestCounts()
	}
	out := &Readings{At: now, Instances: make(map[string]InstanceReading, len(insts)), AvgCPU: math.NaN(), CPUAccounting: s.cfg.CPU != nil}
	cpuSum, cpuN := 0.0, 0
	s.mu.Lock()
	seen := make(map[string]bool, len(insts))
	for _, in := range insts {
		seen[in.ID] = true
		if !in.InService {
			delete(s.prev, in.ID) // a rate starts when it enters service
			continue
		}
		cur := reading{at: now}
		if s.cfg.CPU != nil {
			if u, err := s.cfg.CPU.CPUUsage(in.ID); err == nil {
				cur.cpu, cur.cpuOK = u, true
			}
		}
		if counts != nil {
			cur.requests, cur.reqOK = counts[in.ID]
		}
		prev, ok := s.prev[in.ID]
		s.prev[in.ID] = cur
		if !ok || !now.After(prev.at) {
			continue
		}
		iv := now.Sub(prev.at)
		smp := Sample{Instance: in.ID, At: now, Interval: iv, InService: true, InServiceSince: in.InServiceSince, CPU: math.NaN(), Requests: math.NaN()}
		if cur.cpuOK && prev.cpuOK && cur.cpu >= prev.cpu {
			smp.CPU = CPUPercent(cur.cpu-prev.cpu, iv, s.cfg.Cores)
		}
		if cur.reqOK && prev.reqOK && cur.requests >= prev.requests {
			smp.Requests = float64(cur.requests - prev.requests)
		}
		s.agg.Add(smp)
		warming := !in.InServiceSince.IsZero() && now.Add(-iv).Sub(in.InServiceSince) < s.cfg.Warmup
		r := InstanceReading{CPU: smp.CPU, RPS: smp.Requests / iv.Seconds(), InService: true, Warming: warming}
		if math.IsNaN(smp.Requests) {
			r.RPS = math.NaN()
		}
		out.Instances[in.ID] = r
		if !math.IsNaN(smp.CPU) {
			cpuSum += smp.CPU
			cpuN++
		}
	}
	for id := range s.prev {
		if !seen[id] {
			delete(s.prev, id)
		}
	}
	s.mu.Unlock()
	if cpuN > 0 {
		out.AvgCPU = cpuSum / float64(cpuN)
	}
	s.snap.Store(out)
}

// Readings returns the latest readings (a published snapshot).
func (s *Sampler) Readings() Readings { return *s.snap.Load() }

// Observe implements Source: the fleet's capacity, each metric's datapoints
// and the number of warming instances.
func (s *Sampler) Observe(_ context.Context, now time.Time) (Capacity, Observed, error) {
	c := s.cfg.Fleet.Capacity()
	insts := s.cfg.Fleet.Instances()
	s.mu.Lock()
	obs := Observed{
		Warming: Warming(insts, s.cfg.Warmup, now),
		Datapoints: map[Metric][]Datapoint{
			CPUUtilization:        s.agg.Datapoints(CPUUtilization, now),
			RequestCountPerTarget: s.agg.Datapoints(RequestCountPerTarget, now),
		},
	}
	s.mu.Unlock()
	return c, obs, nil
}

// Start samples every Interval in the background until Stop or ctx ends.
func (s *Sampler) Start(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.done != nil {
		return errors.New("start sampler: already started")
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx, s.done)
	return nil
}

// Stop ends the sampler and waits for it (or for ctx).
func (s *Sampler) Stop(ctx context.Context) error {
	s.runMu.Lock()
	cancel, done := s.cancel, s.done
	s.runMu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop sampler: %w", ctx.Err())
	}
}

func (s *Sampler) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	tk := s.cfg.Clock.NewTicker(s.cfg.Interval)
	defer tk.Stop()
	s.safeSample(s.cfg.Clock.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C():
			s.safeSample(now)
		}
	}
}

func (s *Sampler) safeSample(now time.Time) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("sampler panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.Sample(now)
}
