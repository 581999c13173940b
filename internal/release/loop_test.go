package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/testkit"
)

// fakeFleet is an in-memory fleet: a launched instance is in service
// after one listing, unless its version's command says "crash".
type fakeFleet struct {
	mu      sync.Mutex
	seq     int
	insts   []FleetInstance
	desired int
	use     string
	refresh bool
	bad     map[string]bool // versions that crash
}

func (f *fakeFleet) Instances() []FleetInstance {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.insts)
	for i := range f.insts {
		in := &f.insts[i]
		if in.State == "pending" {
			if f.bad[in.Version] {
				in.State, in.Reason = "terminated", "exited: exit status 1"
			} else {
				in.State, in.Health = "in-service", "healthy"
			}
		}
	}
	f.insts = slices.DeleteFunc(f.insts, func(in FleetInstance) bool { return in.State == "gone" })
	for i := range f.insts {
		if f.insts[i].State == "terminated" {
			f.insts[i].State = "gone"
		}
	}
	return out
}
func (f *fakeFleet) Desired() int { return f.desired }
func (f *fakeFleet) Launch(_ context.Context, v Version, zone string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("i-%d", f.seq)
	f.insts = append(f.insts, FleetInstance{ID: id, Zone: zone, Version: v.ID, State: "pending", Health: "initial", LaunchedAt: time.Now()})
	return id, nil
}
func (f *fakeFleet) Terminate(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.insts, func(in FleetInstance) bool { return in.ID == id })
	if i < 0 {
		return errors.New("no such instance")
	}
	f.insts = slices.Delete(f.insts, i, i+1)
	return nil
}
func (f *fakeFleet) Use(v Version) error { f.mu.Lock(); f.use = v.ID; f.mu.Unlock(); return nil }
func (f *fakeFleet) SetRefresh(on bool)  { f.mu.Lock(); f.refresh = on; f.mu.Unlock() }
func (f *fakeFleet) versions() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]int{}
	for _, in := range f.insts {
		m[in.Version]++
	}
	return m
}

func newController(t *testing.T, dir string, f *fakeFleet, breaking func(context.Context, Version, Version) (string, error)) *Controller {
	t.Helper()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Store: st, Fleet: f, Zones: []string{"a", "b"}, Interval: 5 * time.Millisecond, Breaking: breaking,
		Policy: Policy{Bake: 20 * time.Millisecond, HealthTimeout: time.Second}, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitPhase(t *testing.T, c *Controller, id string, want Phase) Rollout {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range c.History() {
			if r.ID == id && r.Phase == want {
				return r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("rollout %s never reached %s: %+v", id, want, c.History())
	return Rollout{}
}

// TestControllerDeployRollbackRestart drives the loop against a fake
// fleet: a good deploy, a refused second one, a crashing version rolled
// back by itself, a manual rollback, and a rollout resumed from its record.
func TestControllerDeployRollbackRestart(t *testing.T) {
	dir := t.TempDir()
	f := &fakeFleet{desired: 2, bad: map[string]bool{}}
	c := newController(t, dir, f, func(_ context.Context, v, _ Version) (string, error) {
		if v.Env["MIGRATION"] == "drop" {
			return "0007_drop_grades_letter (drops a column the old version reads)", nil
		}
		return "", nil
	})
	v1, err := c.Ensure(Template{Command: []string{"app", "serve"}})
	if err != nil || v1.ID != "v1" {
		t.Fatalf("ensure: %v %v", v1, err)
	}
	f.Launch(context.Background(), v1, "a")
	f.Launch(context.Background(), v1, "b")
	f.Instances()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Bad input.
	if _, err := c.Deploy(context.Background(), DeployRequest{}); err == nil || !strings.Contains(err.Error(), "nothing to deploy") {
		t.Errorf("same template: %v", err)
	}
	if _, err := c.Deploy(context.Background(), DeployRequest{Artifact: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing artifact: %v", err)
	}
	if _, err := c.Deploy(context.Background(), DeployRequest{Env: map[string]string{"MIGRATION": "drop"}}); !errors.Is(err, ErrBreaking) || !strings.Contains(err.Error(), "--allow-breaking") {
		t.Errorf("breaking migration: %v", err)
	}

	// A good deploy with an artifact; a second deploy is refused meanwhile.
	art := filepath.Join(t.TempDir(), "app2")
	os.WriteFile(art, []byte("#!/bin/sh\n"), 0o755)
	r, err := c.Deploy(context.Background(), DeployRequest{Artifact: art})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(context.Background(), DeployRequest{Env: map[string]string{"X": "1"}}); !errors.Is(err, ErrInProgress) || !strings.Contains(err.Error(), r.ID) {
		t.Errorf("deploy during %s: %v", r.ID, err)
	}
	waitPhase(t, c, r.ID, PhaseSucceeded)
	v2, _ := c.cfg.Store.Version(r.Target)
	if v2.Artifact == nil || v2.Command[0] != v2.Artifact.Path || !strings.HasPrefix(v2.Hash, "sha256:") {
		t.Errorf("v2: %+v", v2)
	}
	if got := f.versions(); got[v2.ID] != 2 || len(got) != 1 || f.use != v2.ID || f.refresh {
		t.Errorf("after the deploy: %v, use %s, refresh %v", got, f.use, f.refresh)
	}

	// A crashing version rolls back by itself, naming the gate.
	r, err = c.Deploy(context.Background(), DeployRequest{Env: map[string]string{"BAD": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.bad[r.Target] = true
	f.mu.Unlock()
	got := waitPhase(t, c, r.ID, PhaseRolledBack)
	if got.Gate != GateHealth || !strings.Contains(got.Reason, "exit status 1") || got.Target != v2.ID {
		t.Errorf("rollback: gate %q reason %q target %s", got.Gate, got.Reason, got.Target)
	}
	if vs := f.versions(); vs[v2.ID] != 2 || len(vs) != 1 {
		t.Errorf("after the rollback: %v", vs)
	}

	// haven deploy rollback: to v1, rolling and gated.
	r, err = c.Rollback(context.Background(), "")
	if err != nil || r.Target != "v1" || r.Requested != "rollback" {
		t.Fatalf("rollback: %+v %v", r, err)
	}
	waitPhase(t, c, r.ID, PhaseSucceeded)
	if vs := f.versions(); vs["v1"] != 2 || len(vs) != 1 {
		t.Errorf("after the manual rollback: %v", vs)
	}

	// A daemon restart mid-rollout resumes it from the record.
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err = c.Deploy(context.Background(), DeployRequest{Env: map[string]string{"NEXT": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	c2 := newController(t, dir, f, nil)
	if err := c2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = waitPhase(t, c2, r.ID, PhaseSucceeded)
	if st := c2.Status(); st.Current.ID != r.Target || st.Active != nil {
		t.Errorf("after the resumed rollout: current %s active %v", st.Current.ID, st.Active)
	}
	if len(got.Resumed) != 1 || got.AllowedBreaking != "" {
		t.Errorf("resumed rollout's record: resumed %v, allowed breaking %q; want one restart, none allowed", got.Resumed, got.AllowedBreaking)
	}
	if err := c2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// --allow-breaking rolls a breaking version out, and the record says what it allowed.
	c3 := newController(t, dir, f, func(_ context.Context, v, _ Version) (string, error) {
		if v.Env["MIGRATION"] == "drop" {
			return "migration 7 (drop grades.letter)", nil
		}
		return "", nil
	})
	if err := c3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c3.Stop(context.Background())
	r, err = c3.Deploy(context.Background(), DeployRequest{Env: map[string]string{"MIGRATION": "drop"}, AllowBreaking: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitPhase(t, c3, r.ID, PhaseSucceeded); got.AllowedBreaking != "migration 7 (drop grades.letter)" {
		t.Errorf("allowed breaking rollout's record says %q", got.AllowedBreaking)
	}
}

// TestSetPolicy is haven apply of fleet.instance_refresh: a valid policy
// is in effect at once (Status reports it), an invalid one or one naming
// alarms the region lacks is refused and the old one stays.
func TestSetPolicy(t *testing.T) {
	c := newController(t, t.TempDir(), &fakeFleet{}, nil)
	if err := c.SetPolicy(Policy{MinHealthy: 50, Checkpoints: []int{50, 100}}); err != nil {
		t.Fatal(err)
	}
	if p := c.Status().Policy; p.MinHealthy != 50 || len(p.Checkpoints) != 2 {
		t.Errorf("policy after SetPolicy: %+v, want min healthy 50, checkpoints [50 100]", p)
	}
	if err := c.SetPolicy(Policy{RollbackOn: []string{"high-5xx"}}); err == nil || !strings.Contains(err.Error(), "no alarms") {
		t.Errorf("SetPolicy naming alarms without any: %v, want refused", err)
	}
	if err := c.SetPolicy(Policy{MinHealthy: 150}); err == nil {
		t.Error("SetPolicy with min healthy 150% succeeded")
	}
	if p := c.Status().Policy; p.MinHealthy != 50 {
		t.Errorf("a refused SetPolicy changed the policy: %+v", p)
	}
}
