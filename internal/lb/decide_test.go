package lb

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

func TestNextHealth(t *testing.T) {
	tests := []struct {
		name   string
		in     healthCounters
		passed bool
		want   healthCounters
	}{
		{"initial first pass", healthCounters{StateInitial, 0, 0}, true, healthCounters{StateInitial, 1, 0}},
		{"initial reaches healthy", healthCounters{StateInitial, 1, 0}, true, healthCounters{StateHealthy, 2, 0}},
		{"initial fail resets ok", healthCounters{StateInitial, 1, 0}, false, healthCounters{StateInitial, 0, 1}},
		{"initial reaches unhealthy", healthCounters{StateInitial, 0, 1}, false, healthCounters{StateUnhealthy, 0, 2}},
		{"healthy one fail", healthCounters{StateHealthy, 5, 0}, false, healthCounters{StateHealthy, 0, 1}},
		{"healthy to unhealthy", healthCounters{StateHealthy, 0, 1}, false, healthCounters{StateUnhealthy, 0, 2}},
		{"healthy pass resets fail", healthCounters{StateHealthy, 0, 1}, true, healthCounters{StateHealthy, 1, 0}},
		{"unhealthy one pass", healthCounters{StateUnhealthy, 0, 3}, true, healthCounters{StateUnhealthy, 1, 0}},
		{"unhealthy back to healthy", healthCounters{StateUnhealthy, 1, 0}, true, healthCounters{StateHealthy, 2, 0}},
		{"draining ignores pass", healthCounters{StateDraining, 0, 0}, true, healthCounters{StateDraining, 0, 0}},
		{"draining ignores fail", healthCounters{StateDraining, 0, 0}, false, healthCounters{StateDraining, 0, 0}},
	}
	for _, tt := range tests {
		if got := nextHealth(tt.in, tt.passed, 2, 2); got != tt.want {
			t.Errorf("%s: nextHealth(%+v, %v) = %+v, want %+v", tt.name, tt.in, tt.passed, got, tt.want)
		}
	}
}

func TestSlowStartWeight(t *testing.T) {
	tests := []struct {
		elapsed, window time.Duration
		want            float64
	}{
		{0, 0, 1},
		{time.Second, 0, 1},
		{0, 10 * time.Second, minSlowStartWeight},
		{time.Second, 10 * time.Second, 0.1},
		{5 * time.Second, 10 * time.Second, 0.5},
		{10 * time.Second, 10 * time.Second, 1},
		{time.Hour, 10 * time.Second, 1},
	}
	for _, tt := range tests {
		if got := slowStartWeight(tt.elapsed, tt.window); got != tt.want {
			t.Errorf("slowStartWeight(%s, %s) = %v, want %v", tt.elapsed, tt.window, got, tt.want)
		}
	}
}

func TestPickRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []float64
		skip    []bool
		rounds  int
		want    []int // picks per choice
	}{
		{"equal", []float64{1, 1, 1, 1}, nil, 400, []int{100, 100, 100, 100}},
		{"weighted", []float64{1, 0.25}, nil, 500, []int{400, 100}},
		{"skip", []float64{1, 1, 1}, []bool{false, true, false}, 100, []int{50, 0, 50}},
		{"all skipped", []float64{1}, []bool{true}, 10, []int{0}},
	}
	for _, tt := range tests {
		cur := make([]float64, len(tt.weights))
		cs := make([]choice, len(tt.weights))
		for i, w := range tt.weights {
			cs[i] = choice{weight: w, current: &cur[i]}
			if tt.skip != nil {
				cs[i].skip = tt.skip[i]
			}
		}
		got := make([]int, len(cs))
		for range tt.rounds {
			if i := pickRoundRobin(cs); i >= 0 {
				got[i]++
			}
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: picks = %v, want %v", tt.name, got, tt.want)
				break
			}
		}
	}
}

func TestPickRoundRobinOrder(t *testing.T) {
	cur := make([]float64, 4)
	cs := make([]choice, 4)
	for i := range cs {
		cs[i] = choice{weight: 1, current: &cur[i]}
	}
	var got []int
	for range 8 {
		got = append(got, pickRoundRobin(cs))
	}
	want := []int{0, 1, 2, 3, 0, 1, 2, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pick order = %v, want %v", got, want)
		}
	}
}

func TestPickLeastOutstanding(t *testing.T) {
	tests := []struct {
		name     string
		inflight []int64
		weights  []float64
		skip     []bool
		start    int
		want     int
	}{
		{"idle wins", []int64{3, 0, 2}, nil, nil, 0, 1},
		{"tie rotates from start", []int64{1, 1, 1}, nil, nil, 2, 2},
		{"tie from 0", []int64{0, 0}, nil, nil, 0, 0},
		{"weight counts", []int64{1, 0}, []float64{1, 0.1}, nil, 0, 0},
		{"skip", []int64{0, 5}, nil, []bool{true, false}, 0, 1},
		{"none", []int64{0}, nil, []bool{true}, 0, -1},
	}
	for _, tt := range tests {
		cs := make([]choice, len(tt.inflight))
		for i := range cs {
			cs[i] = choice{weight: 1, inflight: tt.inflight[i]}
			if tt.weights != nil {
				cs[i].weight = tt.weights[i]
			}
			if tt.skip != nil {
				cs[i].skip = tt.skip[i]
			}
		}
		if got := pickLeastOutstanding(cs, tt.start); got != tt.want {
			t.Errorf("%s: pick = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestEligible(t *testing.T) {
	mk := func(id string, s State) *target { return &target{id: id, state: s, wasHealthy: s != StateInitial} }
	never := &target{id: "n", state: StateUnhealthy}
	ids := func(ts []*target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.id)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name     string
		in       []*target
		want     string
		failOpen bool
	}{
		{"healthy only", []*target{mk("a", StateHealthy), mk("b", StateUnhealthy), mk("c", StateInitial), mk("d", StateDraining)}, "a", false},
		{"fail open", []*target{mk("a", StateUnhealthy), mk("b", StateUnhealthy), mk("d", StateDraining)}, "a,b", true},
		{"fail open never initial", []*target{mk("a", StateUnhealthy), mk("c", StateInitial)}, "a", true},
		{"fail open never a never-healthy target", []*target{mk("a", StateUnhealthy), never}, "a", true},
		{"never-healthy only", []*target{never}, "", false},
		{"initial only", []*target{mk("c", StateInitial)}, "", false},
		{"draining only", []*target{mk("d", StateDraining)}, "", false},
		{"none", nil, "", false},
	}
	for _, tt := range tests {
		got, fo := eligible(tt.in)
		if ids(got) != tt.want || fo != tt.failOpen {
			t.Errorf("%s: eligible = %q, failOpen %v; want %q, %v", tt.name, ids(got), fo, tt.want, tt.failOpen)
		}
	}
}

func TestInterleaveZones(t *testing.T) {
	in := []*target{{id: "b1", zone: "b"}, {id: "a1", zone: "a"}, {id: "a2", zone: "a"}, {id: "a3", zone: "a"}, {id: "b2", zone: "b"}}
	var got []string
	for _, t := range interleaveZones(in) {
		got = append(got, t.id)
	}
	if g, w := strings.Join(got, ","), "a1,b1,a2,b2,a3"; g != w {
		t.Errorf("interleaveZones = %s, want %s", g, w)
	}
}

func TestConfigValidate(t *testing.T) {
	okTLS := &tls.Config{Certificates: []tls.Certificate{{}}}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"defaults ok", func(c *Config) {}, ""},
		{"no tls", func(c *Config) { c.TLS = nil }, "load_balancer.tls"},
		{"bad addr", func(c *Config) { c.HTTPSAddr = "nope" }, "load_balancer.https"},
		{"bad http addr", func(c *Config) { c.HTTPAddr = "x" }, "load_balancer.http"},
		{"timeout >= interval", func(c *Config) { c.HealthCheck.Interval = time.Second; c.HealthCheck.Timeout = time.Second }, "health_check.timeout"},
		{"path", func(c *Config) { c.HealthCheck.Path = "healthz" }, "health_check.path"},
		{"healthy threshold", func(c *Config) { c.HealthCheck.HealthyThreshold = 11 }, "health_check.healthy"},
		{"unhealthy threshold", func(c *Config) { c.HealthCheck.UnhealthyThreshold = -1 }, "health_check.unhealthy"},
		{"algorithm", func(c *Config) { c.Algorithm = "random" }, "load_balancer.algorithm"},
		{"slow start", func(c *Config) { c.SlowStart = -time.Second }, "slow_start"},
	}
	for _, tt := range tests {
		c := Config{TLS: okTLS}
		tt.mod(&c)
		err := c.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: Validate = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: Validate = %v, want error naming %q", tt.name, err, tt.wantErr)
		}
	}
	if got := (Config{HealthCheck: HealthCheck{Interval: 100 * time.Millisecond}}).withDefaults().HealthCheck.Timeout; got != 80*time.Millisecond {
		t.Errorf("default timeout for a 100ms interval = %s, want 80ms", got)
	}
	d := Config{}.withDefaults()
	if d.IdleTimeout != 60*time.Second || d.RetryBudget != 5*time.Second || d.DeregistrationDelay != 300*time.Second || d.Algorithm != RoundRobin || d.HTTPSAddr != "127.0.0.1:0" {
		t.Errorf("defaults = %+v", d)
	}
}
