// Package load generates open-model HTTP load: requests start on a fixed timeline set by a vegeta pacer, whatever the responses do, and every second is recorded.
//
// An open model is what users do to a site: they arrive at a rate, whether or
// not earlier requests have been answered. A closed model (N workers, each
// waiting for its answer) slows down when the site does, so the requests a
// slow site would have received are never sent and their latency never
// measured ("coordinated omission"). Here the n-th request is due at a moment
// fixed by the pacer before the run starts; it is started then (or as soon as
// the generator can, if the machine is busy), and its latency is measured
// from the moment it was due, so a stall shows in full.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// Journey performs one step of a user journey: one request, as a logged-in
// user. Step must be safe for concurrent use.
type Journey interface {
	// Step performs request number n (from 0 in timeline order).
	Step(ctx context.Context, n uint64) Outcome
}

// JourneyFunc adapts a function to Journey.
type JourneyFunc func(ctx context.Context, n uint64) Outcome

// Step calls f.
func (f JourneyFunc) Step(ctx context.Context, n uint64) Outcome { return f(ctx, n) }

// Outcome is what one request came to.
type Outcome struct {
	// Status is the HTTP status code, 0 when no response arrived.
	Status int
	// Err is set when the request failed: no response, or a response the
	// journey does not accept (a wrong body, say).
	Err error
}

// Error classes used as keys of Second.Errors and Summary.Errors, besides
// HTTP status codes ("503").
const (
	// ErrDropped: the generator had MaxInFlight requests outstanding, so it
	// counted the request as failed instead of waiting (which would close
	// the model).
	ErrDropped = "dropped"
	// ErrTimeout: no response within Config.Timeout.
	ErrTimeout = "timeout"
	// ErrTransport: the connection failed (refused, reset, TLS).
	ErrTransport = "transport"
	// ErrRejected: a 2xx or 3xx response the journey did not accept.
	ErrRejected = "rejected"
)

// Defaults applied by Run; each Config field documents its own.
const (
	DefaultMaxInFlight = 2048
	DefaultTimeout     = 30 * time.Second
)

// Fleet is what the Observe callback reports each second.
type Fleet struct {
	// InService and Pending count the fleet's instances.
	InService int
	Pending   int
	// AvgCPU is the average CPU utilisation of in-service instances in
	// percent of their quota, NaN when unknown.
	AvgCPU float64
}

// Config configures a run.
type Config struct {
	// Profile paces the requests. Required.
	Profile Profile
	// Journey performs each request. Required.
	Journey Journey
	// Clock is the time source. Default clock.Real.
	Clock clock.Clock
	// MaxInFlight bounds the requests outstanding at once; a request due
	// while that many are outstanding is counted as ErrDropped. Default 2048.
	MaxInFlight int
	// Timeout bounds each request. Default 30s.
	Timeout time.Duration
	// Progress, if set, receives a live progress line each second (stderr
	// in the CLI). Default none.
	Progress io.Writer
	// Observe, if set, is called once a second; its answer fills the
	// second's fleet fields. Default none: the fields stay empty.
	Observe func(ctx context.Context) Fleet
	// Logger receives the run's logs. Default slog.Default().
	Logger *slog.Logger
}

// Second is one second of the run's timeline. Requests are counted in the
// second they were due, so a stall shows where it started.
type Second struct {
	// T is the second's offset from the start (0, 1, 2, …).
	T int `json:"t"`
	// TargetRPS is the pacer's rate at the start of the second.
	TargetRPS float64 `json:"target_rps"`
	// RPS is how many requests were due (and started) in the second.
	RPS int `json:"rps"`
	// OK counts the successful ones.
	OK int `json:"ok"`
	// Errors counts the failed ones by HTTP status code ("503") or class
	// (dropped, timeout, transport, rejected).
	Errors map[string]int `json:"errors,omitempty"`
	// P50MS, P95MS, P99MS and MaxMS are latency quantiles of the second's
	// answered requests (dropped ones have none), in milliseconds, measured
	// from the moment each request was due.
	P50MS float64 `json:"p50_ms"`
	P95MS float64 `json:"p95_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// InService, Pending and AvgCPU come from Config.Observe; absent when
	// it is not set or was not called in this second.
	InService *int     `json:"in_service,omitempty"`
	Pending   *int     `json:"pending,omitempty"`
	AvgCPU    *float64 `json:"avg_cpu,omitempty"`

	lat []time.Duration
}

// Summary totals a run.
type Summary struct {
	Requests int64          `json:"requests"`
	OK       int64          `json:"ok"`
	Failed   int64          `json:"failed"`
	Errors   map[string]int `json:"errors,omitempty"`
	// ErrorRate is Failed / Requests.
	ErrorRate float64 `json:"error_rate"`
	P50MS     float64 `json:"p50_ms"`
	P95MS     float64 `json:"p95_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
}

// Result is a run's record, the JSON `haven load` prints.
type Result struct {
	Profile   string    `json:"profile"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// DurationS is the profile's duration in seconds.
	DurationS float64  `json:"duration_s"`
	Marks     []Mark   `json:"marks,omitempty"`
	Summary   Summary  `json:"summary"`
	Timeline  []Second `json:"timeline"`

	// lat holds each second's answered latencies, sorted, for Quantile.
	lat [][]time.Duration
}

// Quantile returns the q-quantile (0 < q ≤ 1, nearest rank) of the latencies
// of the requests due in seconds [from, to) of the timeline, in
// milliseconds, and how many requests it is taken over (dropped ones have no
// latency). It answers "p99 outside the first 30 s after the step" across
// seconds, which per-second quantiles cannot.
func (r *Result) Quantile(from, to int, q float64) (float64, int) {
	return r.quantileOf(func(i int) bool { return i >= from && i < to }, q)
}

// QuantileExcept is Quantile over every second outside [from, to).
func (r *Result) QuantileExcept(from, to int, q float64) (float64, int) {
	return r.quantileOf(func(i int) bool { return i < from || i >= to }, q)
}

func (r *Result) quantileOf(in func(int) bool, q float64) (float64, int) {
	var all []time.Duration
	for i := range r.lat {
		if in(i) {
			all = append(all, r.lat[i]...)
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	return ms(quantile(all, q)), len(all)
}

// Run starts the profile's requests on its timeline and waits for the last
// answer. If ctx ends early no more requests start, the outstanding ones
// finish (each within Timeout), and the partial result is returned with
// ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Profile.Validate(); err != nil {
		return nil, fmt.Errorf("run load: %w", err)
	}
	if cfg.Journey == nil {
		return nil, errors.New("run load: no journey")
	}
	clk := clock.Or(cfg.Clock)
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "load")

	secs := int(math.Ceil(cfg.Profile.Duration.Seconds()))
	r := &recorder{secs: make([]Second, secs)}
	for i := range r.secs {
		r.secs[i].T = i
		r.secs[i].TargetRPS = round2(cfg.Profile.Pacer.Rate(time.Duration(i) * time.Second))
	}
	start := clk.Now()
	res := &Result{Profile: cfg.Profile.Name, StartedAt: start.UTC(), DurationS: cfg.Profile.Duration.Seconds(), Marks: cfg.Profile.Marks}
	log.Info("load started", "profile", cfg.Profile.Name, "duration", cfg.Profile.Duration)

	// The progress line and the fleet observations, once a second.
	stopTicks := make(chan struct{})
	ticksDone := make(chan struct{})
	var inflight sync.WaitGroup
	var outstanding atomic.Int64
	go func() {
		defer close(ticksDone)
		tk := clk.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stopTicks:
				return
			case now := <-tk.C():
				sec := int(now.Sub(start)/time.Second) - 1
				r.observe(ctx, cfg.Observe, sec)
				if cfg.Progress != nil {
					fmt.Fprint(cfg.Progress, "\r"+r.progress(sec, secs, cfg.Profile.Name, outstanding.Load())+"\x1b[K")
				}
			}
		}
	}()

	sem := make(chan struct{}, cfg.MaxInFlight)
	var elapsed time.Duration
	var runErr error
	for n := uint64(0); ; n++ {
		wait, stop := cfg.Profile.Pacer.Pace(elapsed, n)
		if stop {
			break
		}
		elapsed += wait
		if elapsed >= cfg.Profile.Duration {
			break
		}
		due := start.Add(elapsed)
		if d := due.Sub(clk.Now()); d > 0 {
			select {
			case <-ctx.Done():
			case <-clk.After(d):
			}
		}
		if ctx.Err() != nil {
			runErr = ctx.Err()
			break
		}
		sec := int(elapsed / time.Second)
		select {
		case sem <- struct{}{}:
		default:
			r.record(sec, 0, Outcome{Err: errors.New(ErrDropped)}, ErrDropped)
			continue
		}
		inflight.Add(1)
		outstanding.Add(1)
		go func(n uint64, due time.Time, sec int) {
			defer inflight.Done()
			defer func() { <-sem; outstanding.Add(-1) }()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Timeout)
			defer cancel()
			out := cfg.Journey.Step(rctx, n)
			lat := clk.Now().Sub(due)
			r.record(sec, lat, out, classify(out, rctx))
		}(n, due, sec)
	}
	inflight.Wait()
	close(stopTicks)
	<-ticksDone
	if last := len(r.secs) - 1; last >= 0 {
		r.observeIfMissing(ctx, cfg.Observe, last)
	}
	res.EndedAt = clk.Now().UTC()
	res.Timeline, res.Summary, res.lat = r.finish()
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "\r%s\x1b[K\n", summaryLine(res))
	}
	log.Info("load finished", "requests", res.Summary.Requests, "failed", res.Summary.Failed, "p99_ms", res.Summary.P99MS)
	return res, runErr
}

// classify maps an outcome to "" (success) or its error key.
func classify(out Outcome, ctx context.Context) string {
	switch {
	case out.Status >= 400:
		return strconv.Itoa(out.Status)
	case out.Err == nil && out.Status >= 200:
		return ""
	case out.Err == nil:
		return ErrTransport // no status and no error: nothing arrived
	case errors.Is(out.Err, context.DeadlineExceeded) || ctx.Err() != nil:
		return ErrTimeout
	case out.Status == 0:
		return ErrTransport
	default:
		return ErrRejected
	}
}

type recorder struct {
	mu   sync.Mutex
	secs []Second
}

func (r *recorder) record(sec int, lat time.Duration, out Outcome, class string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sec < 0 || sec >= len(r.secs) {
		return
	}
	s := &r.secs[sec]
	s.RPS++
	if class != ErrDropped {
		s.lat = append(s.lat, lat)
	}
	if class == "" {
		s.OK++
		return
	}
	if s.Errors == nil {
		s.Errors = map[string]int{}
	}
	s.Errors[class]++
}

func (r *recorder) observe(ctx context.Context, f func(context.Context) Fleet, sec int) {
	if f == nil || sec < 0 {
		return
	}
	fl := f(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if sec >= len(r.secs) {
		sec = len(r.secs) - 1
	}
	s := &r.secs[sec]
	in, pend := fl.InService, fl.Pending
	s.InService, s.Pending = &in, &pend
	if !math.IsNaN(fl.AvgCPU) && !math.IsInf(fl.AvgCPU, 0) {
		c := round2(fl.AvgCPU)
		s.AvgCPU = &c
	} else {
		s.AvgCPU = nil
	}
}

func (r *recorder) observeIfMissing(ctx context.Context, f func(context.Context) Fleet, sec int) {
	r.mu.Lock()
	missing := r.secs[sec].InService == nil
	r.mu.Unlock()
	if missing {
		r.observe(ctx, f, sec)
	}
}

// progress renders the live line for the second just finished.
func (r *recorder) progress(sec, total int, name string, outstanding int64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sec < 0 {
		sec = 0
	}
	if sec >= len(r.secs) {
		sec = len(r.secs) - 1
	}
	s := r.secs[sec]
	errs := 0
	for _, n := range s.Errors {
		errs += n
	}
	lat := append([]time.Duration(nil), s.lat...)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	line := fmt.Sprintf("load %s %3ds/%ds  target %s/s  sent %d/s  errors %d  p99 %s  in flight %d",
		name, sec+1, total, fmtRate(s.TargetRPS), s.RPS, errs, fmtMS(ms(quantile(lat, 0.99))), outstanding)
	if s.InService != nil {
		line += fmt.Sprintf("  fleet %d", *s.InService)
		if *s.Pending > 0 {
			line += fmt.Sprintf("+%d", *s.Pending)
		}
		if s.AvgCPU != nil {
			line += fmt.Sprintf(" cpu %.0f%%", *s.AvgCPU)
		}
	}
	return line
}

func (r *recorder) finish() ([]Second, Summary, [][]time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := Summary{Errors: map[string]int{}}
	var all []time.Duration
	lat := make([][]time.Duration, len(r.secs))
	for i := range r.secs {
		s := &r.secs[i]
		sort.Slice(s.lat, func(a, b int) bool { return s.lat[a] < s.lat[b] })
		s.P50MS, s.P95MS, s.P99MS = ms(quantile(s.lat, 0.50)), ms(quantile(s.lat, 0.95)), ms(quantile(s.lat, 0.99))
		if len(s.lat) > 0 {
			s.MaxMS = ms(s.lat[len(s.lat)-1])
		}
		all = append(all, s.lat...)
		lat[i] = s.lat
		sum.Requests += int64(s.RPS)
		sum.OK += int64(s.OK)
		for k, v := range s.Errors {
			sum.Errors[k] += v
			sum.Failed += int64(v)
		}
		s.lat = nil
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	sum.P50MS, sum.P95MS, sum.P99MS = ms(quantile(all, 0.50)), ms(quantile(all, 0.95)), ms(quantile(all, 0.99))
	if len(all) > 0 {
		sum.MaxMS = ms(all[len(all)-1])
	}
	if sum.Requests > 0 {
		sum.ErrorRate = float64(sum.Failed) / float64(sum.Requests)
	}
	if len(sum.Errors) == 0 {
		sum.Errors = nil
	}
	return append([]Second(nil), r.secs...), sum, lat
}

func summaryLine(res *Result) string {
	var errs []string
	keys := make([]string, 0, len(res.Summary.Errors))
	for k := range res.Summary.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		errs = append(errs, fmt.Sprintf("%s %d", k, res.Summary.Errors[k]))
	}
	e := "no errors"
	if len(errs) > 0 {
		e = "errors: " + strings.Join(errs, ", ")
	}
	return fmt.Sprintf("load %s done: %d requests, %d ok, %s; p50 %s p99 %s max %s",
		res.Profile, res.Summary.Requests, res.Summary.OK, e, fmtMS(res.Summary.P50MS), fmtMS(res.Summary.P99MS), fmtMS(res.Summary.MaxMS))
}

// quantile is the nearest-rank quantile of sorted durations (0 when empty).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func fmtMS(f float64) string {
	if f >= 1000 {
		return fmt.Sprintf("%.2fs", f/1000)
	}
	return fmt.Sprintf("%.0fms", f)
}

// NewResult builds a Result from a timeline (T, TargetRPS, RPS, OK, Errors
// and the fleet fields of each second) and each second's answered
// latencies, computing the quantiles and the summary as Run does: for
// replays, and for tests of what reads a Result.
func NewResult(profile string, start time.Time, secs []Second, lat [][]time.Duration) *Result {
	r := &recorder{secs: append([]Second(nil), secs...)}
	for i := range r.secs {
		if i < len(lat) {
			r.secs[i].lat = append([]time.Duration(nil), lat[i]...)
		}
	}
	res := &Result{Profile: profile, StartedAt: start.UTC(), DurationS: float64(len(secs)), EndedAt: start.Add(time.Duration(len(secs)) * time.Second).UTC()}
	res.Timeline, res.Summary, res.lat = r.finish()
	return res
}
