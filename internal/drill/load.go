// Package drill runs failure drills against a live region and reports what users saw, with numbers.
package drill

import (
	"context"
	"errors"
	"maps"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/load"
)

// Recorder collects request outcomes and latencies.
type Recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	failed    int64
	errs      map[string]int
	failures  []Failure
	// first and last are the first and the last failure, of all of them
	// (failures keeps 50).
	first, last time.Time
	// start is when the recorder was made; secs are the requests by the
	// second (since start) they started in, for the timeline.
	start time.Time
	secs  []second
}

// second is one second of requests: their latencies and failures.
type second struct {
	lat    []time.Duration
	errors map[string]int
}

// Failure is one failed request, kept for the report.
type Failure struct {
	At    time.Time `json:"at"`
	Path  string    `json:"path"`
	Error string    `json:"error"`
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{errs: map[string]int{}, start: time.Now()} }

// Record adds one request's outcome.
func (r *Recorder) Record(path string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latencies = append(r.latencies, d)
	if i := int(time.Since(r.start.Add(d)) / time.Second); i >= 0 && i < 24*3600 {
		for len(r.secs) <= i {
			r.secs = append(r.secs, second{})
		}
		sec := &r.secs[i]
		sec.lat = append(sec.lat, d)
		if err != nil {
			if sec.errors == nil {
				sec.errors = map[string]int{}
			}
			sec.errors[errorClass(err)]++
		}
	}
	if err != nil {
		r.failed++
		now := time.Now().UTC()
		if r.first.IsZero() {
			r.first = now
		}
		r.last = now
		msg := err.Error()
		if len(msg) > 160 {
			msg = msg[:160]
		}
		r.errs[msg]++
		if len(r.failures) < 50 {
			r.failures = append(r.failures, Failure{At: now, Path: path, Error: msg})
		}
	}
}

// Summary is the recorder's totals.
type Summary struct {
	Requests int64          `json:"requests"`
	Failed   int64          `json:"failed"`
	P50MS    float64        `json:"p50_ms"`
	P99MS    float64        `json:"p99_ms"`
	MaxMS    float64        `json:"max_ms"`
	Errors   map[string]int `json:"errors,omitempty"`
	Failures []Failure      `json:"failures,omitempty"`
	// FirstFail and LastFail are when the first and the last of every
	// failed request ended (zero: none failed).
	FirstFail time.Time `json:"first_fail,omitzero"`
	LastFail  time.Time `json:"last_fail,omitzero"`
}

// Summary computes the totals so far.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := append([]time.Duration(nil), r.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	s := Summary{Requests: int64(len(l)), Failed: r.failed, Errors: map[string]int{}, Failures: r.failures, FirstFail: r.first, LastFail: r.last}
	for k, v := range r.errs {
		s.Errors[k] = v
	}
	if len(l) > 0 {
		s.P50MS = ms(quantile(l, 0.50))
		s.P99MS = ms(quantile(l, 0.99))
		s.MaxMS = ms(l[len(l)-1])
	}
	return s
}

// Timeline returns the requests second by second, by the second they
// started in: how many, how many succeeded, the failures by class, and
// latency quantiles (the envelope's per-second timeline).
func (r *Recorder) Timeline() []load.Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]load.Second, len(r.secs))
	for i, s := range r.secs {
		failed := 0
		for _, n := range s.errors {
			failed += n
		}
		l := append([]time.Duration(nil), s.lat...)
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		out[i] = load.Second{T: i, RPS: len(l), OK: len(l) - failed, Errors: maps.Clone(s.errors)}
		if len(l) > 0 {
			out[i].P50MS, out[i].P95MS, out[i].P99MS, out[i].MaxMS = ms(quantile(l, 0.5)), ms(quantile(l, 0.95)), ms(quantile(l, 0.99)), ms(l[len(l)-1])
		}
	}
	return out
}

// errorClass is a failure's timeline key: its HTTP status when the message
// names one ("status 503"), else its kind.
func errorClass(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "status "); i >= 0 && len(msg) >= i+10 {
		if code := msg[i+7 : i+10]; code[0] >= '1' && code[0] <= '5' && strings.Trim(code, "0123456789") == "" {
			return code
		}
	}
	switch {
	case strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline"):
		return "timeout"
	case strings.Contains(msg, "saturated"):
		return "dropped"
	}
	return "transport"
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// RunLoad issues journey steps at rate per second, spread over users, until
// ctx is done. Requests are scheduled on a fixed timeline (the n-th at
// start + n/rate), so a busy machine delays them but does not drop them.
// It never runs more than maxInFlight requests at once.
func RunLoad(ctx context.Context, s *Site, users []*User, rate int, rec *Recorder) {
	const maxInFlight = 256
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for n := 0; ; n++ {
		if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				wg.Wait()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			wg.Wait()
			return
		}
		u := users[n%len(users)]
		select {
		case sem <- struct{}{}:
		default:
			rec.Record("(client)", 0, errors.New("load generator saturated: 256 requests in flight"))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			t0 := time.Now()
			path, err := s.Step(rctx, u)
			rec.Record(path, time.Since(t0), err)
		}()
	}
}

func workloadName(w Workload) string {
	if w == nil {
		return "(none)"
	}
	return w.Name()
}

// Slower counts the recorded requests that took longer than d.
func (r *Recorder) Slower(d time.Duration) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, l := range r.latencies {
		if l > d {
			n++
		}
	}
	return n
}
