package fleet

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeBalancer is a target group whose health the test sets.
type fakeBalancer struct {
	mu           sync.Mutex
	targets      map[string]Target
	health       map[string]string
	deregistered []string
	defaultState string
}

func newFakeBalancer() *fakeBalancer {
	return &fakeBalancer{targets: map[string]Target{}, health: map[string]string{}, defaultState: "initial"}
}

func (b *fakeBalancer) Register(t Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.targets[t.ID]; dup {
		return errors.New("duplicate target")
	}
	b.targets[t.ID] = t
	b.health[t.ID] = b.defaultState
	return nil
}

func (b *fakeBalancer) Deregister(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.targets, id)
	delete(b.health, id)
	b.deregistered = append(b.deregistered, id)
	return nil
}

func (b *fakeBalancer) TargetHealth(id string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.health[id]
	return h, ok
}

func (b *fakeBalancer) set(id, state string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.health[id]; ok {
		b.health[id] = state
	}
}

func TestFleetELBHealth(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	lb := newFakeBalancer()
	cfg.Balancer, cfg.HealthCheckType = lb, HealthCheckELB
	cfg.GracePeriod = time.Hour // unhealthy is ignored for now
	f := startFleet(t, cfg)
	waitFor(t, "2 registered", func() bool { return len(f.Instances()) == 2 })
	// Registered with the right addresses, and pending until the LB says healthy.
	for _, s := range f.Instances() {
		lb.mu.Lock()
		tg := lb.targets[s.ID]
		lb.mu.Unlock()
		if tg.Addr != s.Address+":"+itoa(s.Port) || tg.Zone != s.Zone || tg.AZ != s.AZ {
			t.Errorf("target got %+v for %+v", tg, s)
		}
	}
	time.Sleep(3 * cfg.ReconcileInterval)
	if n := len(inService(f)); n != 0 {
		t.Fatalf("in service before healthy: %d", n)
	}
	a, b := f.Instances()[0], f.Instances()[1]
	lb.set(a.ID, "healthy")
	lb.set(b.ID, "healthy")
	waitFor(t, "in service", func() bool { return len(inService(f)) == 2 })

	// Unhealthy within the grace period: kept.
	lb.set(a.ID, "unhealthy")
	waitFor(t, "health unhealthy", func() bool {
		return slices.ContainsFunc(f.Instances(), func(s InstanceStatus) bool { return s.ID == a.ID && s.Health == HealthUnhealthy })
	})
	time.Sleep(3 * cfg.ReconcileInterval)
	if !slices.ContainsFunc(live(f), func(s InstanceStatus) bool { return s.ID == a.ID }) {
		t.Fatal("unhealthy instance replaced within grace period")
	}
	// Past the grace period: replaced, deregistered, in the same zone.
	f.mu.Lock()
	f.cfg.GracePeriod = 0
	f.mu.Unlock()
	lb.mu.Lock()
	lb.defaultState = "healthy"
	lb.mu.Unlock()
	waitFor(t, "replacement in service", func() bool {
		ss := f.Instances()
		return len(ss) == 2 && len(inService(f)) == 2 && !slices.ContainsFunc(ss, func(s InstanceStatus) bool { return s.ID == a.ID })
	})
	if z := zoneCounts(f.Instances()); z["a"] != 1 || z["b"] != 1 {
		t.Errorf("zones got %v", z)
	}
	lb.mu.Lock()
	if !slices.Contains(lb.deregistered, a.ID) {
		t.Errorf("deregistered got %v, want %s", lb.deregistered, a.ID)
	}
	lb.mu.Unlock()
	if alive(a.PID) {
		t.Errorf("replaced pid %d alive", a.PID)
	}
	var got []string
	for _, e := range ev.all() {
		if e.Instance == a.ID {
			got = append(got, e.Type)
		}
	}
	want := []string{EventLaunch, EventInService, EventUnhealthy, EventReplace, EventTerminate, EventTerminated}
	if !slices.Equal(got, want) {
		t.Errorf("events of %s got %v, want %v", a.ID, got, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// probeBalancer health-checks targets over real HTTP, synchronously in TargetHealth.
type probeBalancer struct {
	fakeBalancer
	client *http.Client
	fails  map[string]int
}

func (b *probeBalancer) TargetHealth(id string) (string, bool) {
	b.mu.Lock()
	tg, ok := b.targets[id]
	b.mu.Unlock()
	if !ok {
		return "", false
	}
	resp, err := b.client.Get("http://" + tg.Addr + "/healthz")
	if err == nil {
		resp.Body.Close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil && resp.StatusCode == 200 {
		b.fails[id] = 0
		return "healthy", true
	}
	b.fails[id]++
	if b.fails[id] >= 2 {
		return "unhealthy", true
	}
	return "initial", true
}

// TestFleetELBStoppedProcessReplaced is the "hung instance" drill: SIGSTOP keeps
// the process alive (ec2 health would keep it) but real HTTP checks fail, so it is
// replaced, and the stopped process is killed.
func TestFleetELBStoppedProcessReplaced(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	lb := &probeBalancer{fakeBalancer: *newFakeBalancer(), client: &http.Client{Timeout: 100 * time.Millisecond}, fails: map[string]int{}}
	cfg.Balancer, cfg.HealthCheckType = lb, HealthCheckELB
	cfg.StopTimeout = 300 * time.Millisecond
	f := startFleet(t, cfg)
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) && len(f.Instances()) == 2 })
	victim := f.Instances()[0]
	if err := f.Signal(victim.ID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hung instance replaced", func() bool {
		return len(f.Instances()) == 2 && len(inService(f)) == 2 &&
			!slices.ContainsFunc(f.Instances(), func(s InstanceStatus) bool { return s.ID == victim.ID })
	})
	if alive(victim.PID) {
		t.Errorf("stopped pid %d still alive", victim.PID)
	}
}

func TestFleetLaunchFailureBacksOff(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Template.Command = []string{"/nonexistent/app"}
	cfg.ReconcileInterval = 20 * time.Millisecond
	f := startFleet(t, cfg)
	// Backoff after failure n is 20ms·2^(n-1) ±20%: without it, a launch would
	// be retried at every 20ms reconcile.
	waitFor(t, "5 launch failures", func() bool {
		n := 0
		for _, e := range ev.all() {
			if e.Type == EventLaunchFailed {
				n++
			}
		}
		return n >= 5
	})
	var times []time.Time
	for _, e := range ev.all() {
		if e.Type == EventLaunchFailed {
			times = append(times, e.Time)
		}
	}
	if gap := times[4].Sub(times[3]); gap < 128*time.Millisecond {
		t.Errorf("gap after 4th failure got %v, want ≥ 128ms (backoff 160ms -20%%)", gap)
	}
	if n := len(f.Instances()); n != 0 {
		t.Errorf("instances got %d, want 0", n)
	}
	// A failed launch releases its address.
	for _, z := range cfg.Zones {
		if z.Allocated() != 0 {
			t.Errorf("zone %s: %d addresses still allocated", z.Name, z.Allocated())
		}
	}
}
