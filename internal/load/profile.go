package load

import (
	"errors"
	"fmt"
	"math"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Profile is a load shape: a vegeta pacer (requests per second over time)
// and a duration, with the moments its phases change.
type Profile struct {
	// Name is the profile's name, e.g. "exam-week".
	Name string `json:"name"`
	// Pacer paces the requests. Any vegeta pacer works (vegeta's own
	// ConstantPacer, LinearPacer and SinePacer too); the profiles below use
	// Piecewise, which is checked against vegeta's pacers in the tests.
	Pacer vegeta.Pacer `json:"-"`
	// Duration is how long requests are started for.
	Duration time.Duration `json:"duration"`
	// Marks are the profile's phase changes, for report markers.
	Marks []Mark `json:"marks,omitempty"`
}

// Mark is a named moment of a profile, as an offset from its start.
type Mark struct {
	At    time.Duration `json:"at"`
	Label string        `json:"label"`
}

// Validate checks the profile is usable: a pacer, a positive duration and
// a finite positive rate at its start.
func (p Profile) Validate() error {
	if p.Pacer == nil {
		return errors.New("profile: no pacer")
	}
	if p.Duration <= 0 {
		return fmt.Errorf("profile %s: duration must be > 0, got %s", p.Name, p.Duration)
	}
	if r := p.Pacer.Rate(0); !(r > 0) || math.IsInf(r, 0) {
		return fmt.Errorf("profile %s: the rate at the start must be a finite number above 0 per second, got %g", p.Name, r)
	}
	return nil
}

// Steady is a constant rate (requests per second) for d. Request n is due at
// n/rate, so a run makes exactly rate × d requests.
func Steady(rate float64, d time.Duration) Profile {
	return Profile{Name: "steady", Pacer: Piecewise{{Duration: d, From: rate, To: rate}}, Duration: d}
}

// Ramp moves linearly from one rate to another over d.
func Ramp(from, to float64, d time.Duration) Profile {
	return Profile{
		Name:     "ramp",
		Pacer:    Piecewise{{Duration: d, From: from, To: to}},
		Duration: d,
		Marks:    []Mark{{0, fmt.Sprintf("ramp %s→%s rps", fmtRate(from), fmtRate(to))}},
	}
}

// Spike holds base, steps at once to peak and holds it, then drops back to
// base: the exam-spike drill's shape.
func Spike(base, peak float64, before, hold, after time.Duration) Profile {
	return Profile{
		Name: "spike",
		Pacer: Piecewise{
			{Duration: before, From: base, To: base},
			{Duration: hold, From: peak, To: peak},
			{Duration: after, From: base, To: base},
		},
		Duration: before + hold + after,
		Marks: []Mark{
			{before, fmt.Sprintf("step to %s rps", fmtRate(peak))},
			{before + hold, fmt.Sprintf("drop to %s rps", fmtRate(base))},
		},
	}
}

// ExamWeek is the morning of an exam, one hour compressed into hour: a
// baseline for 10 % of it, a ramp to factor × base over 15 % (students
// logging in before the exam), the peak for 45 %, a ramp down over 10 %, and
// the baseline again for the last 20 %.
func ExamWeek(base, factor float64, hour time.Duration) Profile {
	part := func(pct int) time.Duration { return hour * time.Duration(pct) / 100 }
	peak := base * factor
	segs := Piecewise{
		{Duration: part(10), From: base, To: base},
		{Duration: part(15), From: base, To: peak},
		{Duration: part(45), From: peak, To: peak},
		{Duration: part(10), From: peak, To: base},
		{Duration: hour - part(80), From: base, To: base},
	}
	return Profile{
		Name:     "exam-week",
		Pacer:    segs,
		Duration: hour,
		Marks: []Mark{
			{part(10), "logins start"},
			{part(25), fmt.Sprintf("peak %s rps (%s×)", fmtRate(peak), fmtRate(factor))},
			{part(70), "exam over"},
			{part(80), "baseline"},
		},
	}
}

func fmtRate(f float64) string {
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.1f", f)
}

// Segment is a stretch of a Piecewise profile whose rate moves linearly from
// From to To requests per second.
type Segment struct {
	Duration time.Duration
	From, To float64
}

// Piecewise is a vegeta pacer made of linear segments. Its n-th request
// (from 0) starts at the moment the integral of the rate reaches n, computed
// exactly, so the timeline never depends on how fast requests complete.
// After the last segment it stops.
type Piecewise []Segment

var _ vegeta.Pacer = Piecewise(nil)

// Rate returns the rate at elapsed, in requests per second.
func (p Piecewise) Rate(elapsed time.Duration) float64 {
	t := elapsed
	for _, s := range p {
		if t < s.Duration {
			return s.From + (s.To-s.From)*t.Seconds()/s.Duration.Seconds()
		}
		t -= s.Duration
	}
	return 0
}

// Hits returns how many requests are due by elapsed (the integral of the rate).
func (p Piecewise) Hits(elapsed time.Duration) float64 {
	h, t := 0.0, elapsed
	for _, s := range p {
		if t <= 0 {
			break
		}
		d := s.Duration
		if t < d {
			d = t
		}
		x, T := d.Seconds(), s.Duration.Seconds()
		h += s.From*x + (s.To-s.From)*x*x/(2*T)
		t -= s.Duration
	}
	return h
}

// Offset returns when request n (from 0) starts, and false when the
// profile ends before it.
func (p Piecewise) Offset(n uint64) (time.Duration, bool) {
	h := float64(n)
	var base time.Duration
	for _, s := range p {
		T := s.Duration.Seconds()
		a, k := s.From, (s.To-s.From)/(2*T)
		total := a*T + k*T*T
		if h <= total && total > 0 {
			// Solve a·x + k·x² = h for the smallest x ≥ 0, in the form that
			// stays exact when k is 0 or negative.
			disc := a*a + 4*k*h
			if disc < 0 {
				disc = 0
			}
			x := 0.0
			if den := a + math.Sqrt(disc); den > 0 {
				x = 2 * h / den
			}
			if x <= T {
				return base + time.Duration(x*float64(time.Second)), true
			}
		}
		h -= total
		base += s.Duration
	}
	return 0, false
}

// Pace implements vegeta.Pacer: the wait from elapsed until request number
// hits starts, or stop when the profile is over.
func (p Piecewise) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	at, ok := p.Offset(hits)
	if !ok {
		return 0, true
	}
	if at <= elapsed {
		return 0, false
	}
	return at - elapsed, false
}
