// Package backoff computes capped, jittered exponential retry delays, the one retry schedule every haven loop shares.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Defaults applied by Policy.Delay when a field is zero.
const (
	DefaultBase   = time.Second
	DefaultMax    = 5 * time.Minute
	DefaultJitter = 0.2
)

// Policy is an exponential backoff: the n-th consecutive failure waits
// Base·2^(n-1), capped at Max, then spread by ±Jitter so that many clients
// failing together do not retry together. The zero value is usable.
type Policy struct {
	// Base is the delay after the first failure. Default 1 s.
	Base time.Duration
	// Max caps every delay, jitter included. Default 5 min.
	Max time.Duration
	// Jitter is the fraction the delay is spread by on each side, in [0, 1).
	// Default 0.2; a negative value means no jitter.
	Jitter float64
	// Rand returns a number in [0, 1) for the jitter. Default math/rand/v2.
	// Tests pass a fixed function.
	Rand func() float64
}

func (p Policy) withDefaults() Policy {
	if p.Base <= 0 {
		p.Base = DefaultBase
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = DefaultJitter
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter >= 1:
		p.Jitter = 0.99
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// Nominal returns the delay after the n-th consecutive failure before
// jitter: Base·2^(n-1), capped at Max. n < 1 counts as 1.
func (p Policy) Nominal(n int) time.Duration {
	p = p.withDefaults()
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// Delay returns the jittered delay after the n-th consecutive failure: a
// value in [Nominal(n)·(1−Jitter), Nominal(n)·(1+Jitter)], never above Max.
func (p Policy) Delay(n int) time.Duration {
	p = p.withDefaults()
	d := float64(p.Nominal(n))
	j := d * (1 - p.Jitter + 2*p.Jitter*p.Rand())
	return min(time.Duration(j), p.Max)
}
