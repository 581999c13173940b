package backoff

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestNominalDoublesAndCaps(t *testing.T) {
	p := Policy{Base: time.Second, Max: 10 * time.Second}
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for n, w := range want {
		if got := p.Nominal(n); got != w {
			t.Errorf("Nominal(%d) = %v, want %v", n, got, w)
		}
	}
	if got := p.Nominal(1 << 20); got != 10*time.Second {
		t.Errorf("Nominal(huge) = %v, want the cap", got)
	}
}

func TestDelayStaysWithinJitterAndCap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := Policy{Base: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.25, Rand: r.Float64}
	seen := map[time.Duration]bool{}
	for n := 1; n <= 20; n++ {
		for i := 0; i < 200; i++ {
			nom := p.Nominal(n)
			d := p.Delay(n)
			lo := time.Duration(float64(nom) * 0.75)
			hi := min(time.Duration(float64(nom)*1.25), p.Max)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, lo, hi)
			}
			seen[d] = true
		}
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays in 4000 draws: no jitter?", len(seen))
	}
}

func TestZeroPolicyUsesDefaults(t *testing.T) {
	var p Policy
	p.Rand = func() float64 { return 0.5 } // the middle of the band: no spread
	if got := p.Delay(1); got != DefaultBase {
		t.Errorf("Delay(1) = %v, want %v", got, DefaultBase)
	}
	if got := p.Delay(100); got != DefaultMax {
		t.Errorf("Delay(100) = %v, want %v", got, DefaultMax)
	}
	p.Rand = func() float64 { return 0.999 }
	if got := p.Delay(100); got > DefaultMax {
		t.Errorf("Delay(100) with top jitter = %v, above the cap %v", got, DefaultMax)
	}
	p.Jitter = -1
	p.Rand = func() float64 { return 0 }
	if got := p.Delay(3); got != 4*DefaultBase {
		t.Errorf("Delay(3) without jitter = %v, want %v", got, 4*DefaultBase)
	}
}
