package lb

import (
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of the load balancer's
// latency histograms (Metrics.RequestDuration, ZoneMetrics.TargetResponseTime):
// from 5 ms to 10 s, as a target's p99 alarm (1 s by default) needs
// resolution around a second.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Classes are the status classes responses are counted in, in the order of
// ClassCounts. 460 (the client closed the connection) is a 4xx.
var Classes = []string{"2xx", "3xx", "4xx", "5xx"}

// ClassCounts counts responses by status class, in the order of Classes.
type ClassCounts [4]uint64

// Total is the sum over the classes.
func (c ClassCounts) Total() uint64 { return c[0] + c[1] + c[2] + c[3] }

// Histogram is a latency histogram: Counts[i] is how many observations were
// at most Bounds[i] seconds (cumulative, as Prometheus exposes them); Count
// and Sum cover every observation, those above the last bound too.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// ZoneMetrics are the load balancer's counters for the targets of one zone
// ("" for requests answered without reaching a target).
type ZoneMetrics struct {
	Zone string `json:"zone"`
	// Responses counts every response to a request whose last attempt went
	// to a target of the zone, by status class.
	Responses ClassCounts `json:"responses"`
	// Ejections counts targets of the zone ejected after a connection error.
	Ejections uint64 `json:"ejections"`
	// TargetResponseTime is the time from an attempt leaving the load
	// balancer to the target's response headers (ALB's TargetResponseTime),
	// for attempts that got headers.
	TargetResponseTime Histogram `json:"target_response_time"`
}

// TargetMetrics are one registered target's counters, since it registered.
type TargetMetrics struct {
	ID       string `json:"id"`
	Zone     string `json:"zone"`
	State    State  `json:"state"`
	InFlight int64  `json:"in_flight"`
	// Responses counts the responses to requests whose last attempt went to
	// the target, by status class.
	Responses ClassCounts `json:"responses"`
	// Ejections counts the times it was ejected after a connection error.
	Ejections uint64 `json:"ejections"`
}

// Metrics is a snapshot of every counter the load balancer keeps for its
// metrics endpoint, a plain value (JSON-encodable, so it can also be read
// from a load balancer in another process). Counters only grow, except
// that a target's disappear with it.
type Metrics struct {
	Stats Stats `json:"stats"`
	// ActiveConnections is the number of client connections open on the
	// HTTPS listener.
	ActiveConnections int64 `json:"active_connections"`
	// RequestDuration is the time from a request's arrival to the end of
	// its response, as the client sees it.
	RequestDuration Histogram `json:"request_duration"`
	// Zones are sorted by name ("" first).
	Zones []ZoneMetrics `json:"zones"`
	// Targets are the registered targets (draining ones too), sorted by ID.
	Targets []TargetMetrics `json:"targets"`
}

// histogram is a lock-free latency histogram over LatencyBuckets.
type histogram struct {
	buckets [12]atomic.Uint64 // len(LatencyBuckets)+1, the last is +Inf; not cumulative
	sumNS   atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(LatencyBuckets, s)
	h.buckets[i].Add(1)
	h.sumNS.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: slices.Clone(LatencyBuckets), Counts: make([]uint64, len(LatencyBuckets))}
	var cum uint64
	for i := range LatencyBuckets {
		cum += h.buckets[i].Load()
		out.Counts[i] = cum
	}
	out.Count = cum + h.buckets[len(LatencyBuckets)].Load()
	out.Sum = float64(h.sumNS.Load()) / 1e9
	return out
}

type classCounters [4]atomic.Uint64

func (c *classCounters) add(status int) {
	switch {
	case status >= 500:
		c[3].Add(1)
	case status >= 400:
		c[2].Add(1)
	case status >= 300:
		c[1].Add(1)
	default:
		c[0].Add(1)
	}
}

func (c *classCounters) load() ClassCounts {
	return ClassCounts{c[0].Load(), c[1].Load(), c[2].Load(), c[3].Load()}
}

type zoneCounters struct {
	responses classCounters
	ejections atomic.Uint64
	ttfb      histogram
}

// targetMetrics are a target's own counters for the metrics endpoint; the
// target holds a pointer.
type targetMetrics struct {
	zone      *zoneCounters
	responses classCounters
	ejections atomic.Uint64
}

// lbCounters are the counters behind Metrics beyond Stats.
type lbCounters struct {
	active   atomic.Int64
	duration histogram
	mu       sync.Mutex // guards zones' map (not the counters)
	zones    map[string]*zoneCounters
	targets  sync.Map // target ID → *targetMetrics, while registered
}

func (c *lbCounters) zone(name string) *zoneCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zones == nil {
		c.zones = map[string]*zoneCounters{}
	}
	z, ok := c.zones[name]
	if !ok {
		z = &zoneCounters{}
		c.zones[name] = z
	}
	return z
}

// newTarget returns the counters of a newly registered target.
func (c *lbCounters) newTarget(id, zone string) *targetMetrics {
	tc := &targetMetrics{zone: c.zone(zone)}
	c.targets.Store(id, tc)
	return tc
}

// finish counts one answered request: its status against the target its
// last attempt went to (t nil: none), and its duration.
func (c *lbCounters) finish(t *target, status int, d time.Duration) {
	c.duration.observe(d)
	if t == nil || t.m == nil {
		c.zone("").responses.add(status)
		return
	}
	t.m.responses.add(status)
	t.m.zone.responses.add(status)
}

// connState tracks the HTTPS listener's open client connections.
func (c *lbCounters) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.active.Add(1)
	case http.StateClosed, http.StateHijacked:
		c.active.Add(-1)
	}
}

// Metrics returns a snapshot of the load balancer's counters and targets.
// It reads atomics and the published snapshot: it never waits on the LB's
// lock, and costs about a microsecond per target.
func (l *LB) Metrics() Metrics {
	m := Metrics{Stats: l.Stats(), ActiveConnections: max(l.mx.active.Load(), 0), RequestDuration: l.mx.duration.snapshot()}
	l.mx.mu.Lock()
	for name, z := range l.mx.zones {
		m.Zones = append(m.Zones, ZoneMetrics{Zone: name, Responses: z.responses.load(), Ejections: z.ejections.Load(), TargetResponseTime: z.ttfb.snapshot()})
	}
	l.mx.mu.Unlock()
	if m.Zones == nil {
		m.Zones = []ZoneMetrics{}
	}
	slices.SortFunc(m.Zones, func(a, b ZoneMetrics) int { return strings.Compare(a.Zone, b.Zone) })
	m.Targets = []TargetMetrics{}
	for _, t := range l.snapshot().targets {
		tm := TargetMetrics{ID: t.st.ID, Zone: t.st.Zone, State: t.st.State, InFlight: t.inflight.Load()}
		if v, ok := l.mx.targets.Load(t.st.ID); ok {
			tc := v.(*targetMetrics)
			tm.Responses, tm.Ejections = tc.responses.load(), tc.ejections.Load()
		}
		m.Targets = append(m.Targets, tm)
	}
	return m
}

// Quantile estimates the q-quantile (0 < q ≤ 1) of the observations in h
// as the upper bound of the bucket holding it (the last bound for those
// above it); NaN when h is empty.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := math.Ceil(q * float64(h.Count))
	for i, c := range h.Counts {
		if float64(c) >= rank {
			return h.Bounds[i]
		}
	}
	return h.Bounds[len(h.Bounds)-1]
}
