package scaling

import (
	"math"
	"time"
)

// Sample is one instance's reading over one sampling interval (normally one
// second), taken by the platform, never by the app.
type Sample struct {
	// Instance is the instance id.
	Instance string
	// At is the end of the interval.
	At time.Time
	// Interval is the interval's length. Default 1s.
	Interval time.Duration
	// InService reports whether the instance was in service (healthy behind
	// the load balancer) during the interval.
	InService bool
	// InServiceSince is when it entered service; the warmup counts from it.
	// Zero means "long ago".
	InServiceSince time.Time
	// CPU is the instance's CPU utilisation over the interval, in percent of
	// its CPU quota (see CPUPercent). NaN when it is not measured (no cgroup
	// CPU accounting).
	CPU float64
	// Requests is how many requests the load balancer completed to the
	// instance during the interval.
	Requests float64
}

// CPUPercent is CPU utilisation as CloudWatch reports it for an instance:
// the CPU time the instance's cgroup used during an interval of wall time,
// over the time its quota of cores allows, in percent. 100 means the
// instance size is saturated. It returns NaN when wall or cores is not
// positive.
func CPUPercent(usage, wall time.Duration, cores float64) float64 {
	if wall <= 0 || !(cores > 0) || usage < 0 {
		return math.NaN()
	}
	return float64(usage) / (float64(wall) * cores) * 100
}

// InstanceState is what Warming needs to know of one instance: a pending
// instance (launched, not yet in service) or an in-service one.
type InstanceState struct {
	ID             string
	InService      bool
	InServiceSince time.Time
}

// Warming counts the instances that count toward capacity but not toward
// the metrics: pending ones, and in-service ones within warmup of entering
// service.
func Warming(insts []InstanceState, warmup time.Duration, now time.Time) int {
	n := 0
	for _, in := range insts {
		if !in.InService || (!in.InServiceSince.IsZero() && now.Sub(in.InServiceSince) < warmup) {
			n++
		}
	}
	return n
}

// Aggregator turns per-instance samples into one datapoint per period for
// each metric, as CloudWatch aggregates an Auto Scaling group's metrics: only
// in-service instances past warmup contribute.
//
//   - CPUUtilization is the time-weighted average of the contributing
//     samples' CPU (the Average statistic over the period's raw data).
//   - RequestCountPerTarget is the contributing requests per
//     instance-second, times 60: requests per target per minute, which is
//     ALBRequestCountPerTarget's Sum over a one-minute period, and keeps its
//     meaning when the local region shortens the period.
//
// Each datapoint also carries Serving, the time-weighted number of in-service
// instances (warming included) over the span the period's samples cover.
//
// A sample belongs to the period its interval starts in. The aggregator keeps
// the last Keep periods and drops older samples. It does no I/O and reads no
// clock; it is not safe for concurrent use (the sampler owns it).
type Aggregator struct {
	period  time.Duration
	warmup  time.Duration
	buckets []bucket
}

type bucket struct {
	index       int64 // period number: start / period
	used        bool
	cpuSum      float64 // Σ cpu × seconds
	cpuSec      float64
	reqSum      float64
	reqSec      float64
	cpuInst     []string
	reqInst     []string
	servSec     float64   // Σ seconds of in-service samples, warming included
	first, last time.Time // the span the samples cover
}

// NewAggregator returns an aggregator with the given period (default 60s),
// instance warmup (≥ 0) and number of periods to keep (default 20, enough
// for a 15-datapoint scale-in run).
func NewAggregator(period, warmup time.Duration, keep int) *Aggregator {
	if period <= 0 {
		period = DefaultPeriod
	}
	if warmup < 0 {
		warmup = 0
	}
	if keep <= 0 {
		keep = 20
	}
	return &Aggregator{period: period, warmup: warmup, buckets: make([]bucket, keep)}
}

// Period returns the aggregation period.
func (a *Aggregator) Period() time.Duration { return a.period }

// Add takes one sample. Samples of instances not in service or within
// warmup, and samples older than the kept periods, are ignored.
func (a *Aggregator) Add(s Sample) {
	iv := s.Interval
	if iv <= 0 {
		iv = time.Second
	}
	start := s.At.Add(-iv)
	if !s.InService {
		return
	}
	idx := floorDiv(start.UnixNano(), int64(a.period))
	b := &a.buckets[mod(idx, int64(len(a.buckets)))]
	if !b.used || b.index != idx {
		if b.used && b.index > idx {
			return // older than what is kept
		}
		*b = bucket{index: idx, used: true, cpuInst: b.cpuInst[:0], reqInst: b.reqInst[:0], first: start, last: s.At}
	}
	sec := iv.Seconds()
	// Every in-service instance serves traffic, warming or not.
	b.servSec += sec
	if start.Before(b.first) {
		b.first = start
	}
	if s.At.After(b.last) {
		b.last = s.At
	}
	if !s.InServiceSince.IsZero() && start.Sub(s.InServiceSince) < a.warmup {
		return // warming: its metrics do not count yet
	}
	if !math.IsNaN(s.CPU) && !math.IsInf(s.CPU, 0) && s.CPU >= 0 {
		b.cpuSum += s.CPU * sec
		b.cpuSec += sec
		b.cpuInst = addOnce(b.cpuInst, s.Instance)
	}
	if !math.IsNaN(s.Requests) && s.Requests >= 0 {
		b.reqSum += s.Requests
		b.reqSec += sec
		b.reqInst = addOnce(b.reqInst, s.Instance)
	}
}

// Datapoints returns metric m's datapoints for every kept period that has
// closed by now, oldest first; a period without contributing samples has
// Instances 0 (no data). Only CPUUtilization and RequestCountPerTarget are
// known; any other metric returns nil.
func (a *Aggregator) Datapoints(m Metric, now time.Time) []Datapoint {
	if m != CPUUtilization && m != RequestCountPerTarget {
		return nil
	}
	last := floorDiv(now.UnixNano(), int64(a.period)) - 1 // the last closed period
	first := last - int64(len(a.buckets)) + 1
	out := make([]Datapoint, 0, len(a.buckets))
	for idx := first; idx <= last; idx++ {
		dp := Datapoint{Start: time.Unix(0, idx*int64(a.period)).UTC(), Value: math.NaN()}
		b := &a.buckets[mod(idx, int64(len(a.buckets)))]
		if b.used && b.index == idx {
			if span := b.last.Sub(b.first).Seconds(); span > 0 {
				dp.Serving = b.servSec / span
			}
			switch m {
			case CPUUtilization:
				if b.cpuSec > 0 {
					dp.Value, dp.Instances = b.cpuSum/b.cpuSec, len(b.cpuInst)
				}
			case RequestCountPerTarget:
				if b.reqSec > 0 {
					dp.Value, dp.Instances = b.reqSum/b.reqSec*60, len(b.reqInst)
				}
			}
		}
		out = append(out, dp)
	}
	return out
}

func addOnce(list []string, id string) []string {
	for _, x := range list {
		if x == id {
			return list
		}
	}
	return append(list, id)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
