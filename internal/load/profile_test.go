package load

import (
	"math"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// timeline runs a pacer on its own virtual clock, as Run does, and returns
// when each request is due.
func timeline(p vegeta.Pacer, d time.Duration) []time.Duration {
	var out []time.Duration
	var elapsed time.Duration
	for n := uint64(0); ; n++ {
		wait, stop := p.Pace(elapsed, n)
		if stop {
			break
		}
		elapsed += wait
		if elapsed >= d {
			break
		}
		out = append(out, elapsed)
	}
	return out
}

func perSecond(ts []time.Duration, d time.Duration) []int {
	out := make([]int, int(math.Ceil(d.Seconds())))
	for _, t := range ts {
		out[int(t/time.Second)]++
	}
	return out
}

func TestPiecewiseMatchesVegetaPacers(t *testing.T) {
	// A constant Piecewise and vegeta's ConstantPacer due the same number
	// of requests each second.
	d := 5 * time.Second
	mine := perSecond(timeline(Piecewise{{Duration: d, From: 40, To: 40}}, d), d)
	theirs := perSecond(timeline(vegeta.ConstantPacer{Freq: 40, Per: time.Second}, d), d)
	for i := range mine {
		if mine[i] != 40 || absInt(mine[i]-theirs[i]) > 1 {
			t.Fatalf("second %d: piecewise %d, vegeta %d, want 40", i, mine[i], theirs[i])
		}
	}
	// A ramp from 10 to 110 rps over 10 s against vegeta's LinearPacer.
	d = 10 * time.Second
	mine = perSecond(timeline(Piecewise{{Duration: d, From: 10, To: 110}}, d), d)
	theirs = perSecond(timeline(vegeta.LinearPacer{StartAt: vegeta.ConstantPacer{Freq: 10, Per: time.Second}, Slope: 10}, d), d)
	total := 0
	for i := range mine {
		total += mine[i]
		want := 10 + 10*i + 5 // the rate's mean over second i
		if absInt(mine[i]-want) > 1 || absInt(mine[i]-theirs[i]) > 1 {
			t.Fatalf("second %d: piecewise %d, vegeta %d, want %d", i, mine[i], theirs[i], want)
		}
	}
	if total != 600 {
		t.Fatalf("ramp total = %d, want the integral 600", total)
	}
}

func TestProfilesDueTheirIntegral(t *testing.T) {
	for _, tc := range []struct {
		p    Profile
		want int
	}{
		{Steady(50, 4*time.Second), 200},
		{Ramp(10, 30, 10*time.Second), 200},
		{Ramp(30, 10, 10*time.Second), 200},
		{Spike(20, 160, 10*time.Second, 10*time.Second, 5*time.Second), 200 + 1600 + 100},
		// Exam week over a 100 s "hour": base 10, 8×: 10×10 + 15×(10+80)/2
		// + 45×80 + 10×(80+10)/2 + 20×10 = 100 + 675 + 3600 + 450 + 200.
		{ExamWeek(10, 8, 100*time.Second), 5025},
	} {
		if err := tc.p.Validate(); err != nil {
			t.Fatal(err)
		}
		got := len(timeline(tc.p.Pacer, tc.p.Duration))
		if absInt(got-tc.want) > 1 {
			t.Errorf("%s: %d requests due, want %d", tc.p.Name, got, tc.want)
		}
	}
}

func TestSpikeShape(t *testing.T) {
	p := Spike(20, 160, 10*time.Second, 10*time.Second, 5*time.Second)
	counts := perSecond(timeline(p.Pacer, p.Duration), p.Duration)
	for i, c := range counts {
		want := 20
		if i >= 10 && i < 20 {
			want = 160
		}
		if c != want {
			t.Fatalf("second %d: %d requests, want %d", i, c, want)
		}
		if r := p.Pacer.Rate(time.Duration(i) * time.Second); r != float64(want) {
			t.Fatalf("rate at %ds = %g, want %d", i, r, want)
		}
	}
	if len(p.Marks) != 2 || p.Marks[0].At != 10*time.Second || p.Marks[1].At != 20*time.Second {
		t.Fatalf("marks = %+v", p.Marks)
	}
}

func TestPiecewiseOffsetsAreMonotone(t *testing.T) {
	p := ExamWeek(3, 20, 60*time.Second).Pacer.(Piecewise)
	var prev time.Duration = -1
	for n := uint64(0); ; n++ {
		at, ok := p.Offset(n)
		if !ok {
			break
		}
		if at < prev {
			t.Fatalf("request %d due at %v, before request %d at %v", n, at, n-1, prev)
		}
		if h := p.Hits(at); math.Abs(h-float64(n)) > 1e-6 {
			t.Fatalf("Hits(Offset(%d)) = %g", n, h)
		}
		prev = at
	}
}

func TestProfileValidate(t *testing.T) {
	for _, p := range []Profile{
		{Name: "none"},
		{Name: "zero", Pacer: Piecewise{{Duration: time.Second, From: 0, To: 0}}, Duration: time.Second},
		{Name: "short", Pacer: vegeta.ConstantPacer{Freq: 1, Per: time.Second}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("profile %s validated", p.Name)
		}
	}
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
