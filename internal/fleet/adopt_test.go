package fleet

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/testkit"
)

func testManager(t *testing.T) *cgroup.Manager {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	m, err := cgroup.NewManager(fmt.Sprintf("haven-fleet-adopt-%x", b), testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Enabled() {
		t.Fatal("cgroups not usable on this host; this test needs root and cgroups")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Remove(ctx)
	})
	return m
}

// TestFleetAdoptsAfterRestart: the control loop goes away without stopping
// anything (as a crashed or upgraded daemon); a new fleet on the same
// record adopts every instance (same ids, same pids, same cgroups), keeps
// the capacity scaling set and the launch template and release versions
// the instances were launched from (so no roll or rollout takes them for
// outdated), launches nothing, and still replaces an adopted instance that
// dies.
func TestFleetAdoptsAfterRestart(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.StateFile = filepath.Join(t.TempDir(), "fleet.json")
	cfg.Cgroups = testManager(t)
	f1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tpl := cfg.Template
	tpl.Version = "v2"
	if v, err := f1.SetLaunchTemplate(tpl); err != nil || v != 2 {
		t.Fatalf("SetLaunchTemplate: version %d, %v", v, err)
	}
	if err := f1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f1.SetCapacity(2, 3, 6); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 in service", func() bool { return len(inService(f1)) == 3 && len(f1.Instances()) == 3 })
	before, inService1 := map[string]int{}, map[string]time.Time{}
	for _, s := range f1.Instances() {
		before[s.ID], inService1[s.ID] = s.PID, s.InServiceSince
	}
	f1.SetRefresh(true) // a rollout owns launches when the daemon goes
	f1.Detach()

	ev2 := &eventLog{}
	cfg.OnEvent = ev2.add
	f2 := startFleet(t, cfg)
	a := f2.Adoption()
	slices.Sort(a.Adopted)
	var ids []string
	for id := range before {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if !slices.Equal(a.Adopted, ids) || len(a.Gone)+len(a.LeftAlone)+len(a.Failed) != 0 {
		t.Fatalf("adoption %+v, want %v adopted", a, ids)
	}
	if c := f2.Capacity(); c.Desired != 3 {
		t.Fatalf("capacity after adoption %+v, want desired 3 as scaled", c)
	}
	f2.mu.Lock()
	refresh := f2.refresh
	f2.mu.Unlock()
	if !refresh {
		t.Fatal("the refresh's hold on launches was not kept: the plan could trim a rollout's instances before it resumes")
	}
	f2.SetRefresh(false) // the release controller found nothing to resume
	if v := f2.TemplateVersion(); v != 2 {
		t.Fatalf("template version after adoption %d, want 2 as recorded", v)
	}
	for _, s := range f2.Instances() {
		if s.TemplateVersion != 2 || s.Version != "v2" {
			t.Fatalf("adopted %s: template version %d, release %q; want 2 and v2 as launched", s.ID, s.TemplateVersion, s.Version)
		}
		if !s.InServiceSince.Equal(inService1[s.ID]) || s.InServiceSince.IsZero() {
			t.Fatalf("adopted %s: in service since %v, want %v as before", s.ID, s.InServiceSince, inService1[s.ID])
		}
	}
	time.Sleep(5 * cfg.ReconcileInterval)
	for _, s := range f2.Instances() {
		if before[s.ID] != s.PID || s.State != StateInService {
			t.Fatalf("instance %s: pid %d state %s, want pid %d in service", s.ID, s.PID, s.State, before[s.ID])
		}
		if info := getInfo(t, s); int(info["pid"].(float64)) != s.PID {
			t.Fatalf("%s answers from pid %v", s.ID, info["pid"])
		}
	}
	for _, e := range ev2.all() {
		if e.Type == EventLaunch || e.Type == EventTerminate {
			t.Fatalf("event %+v after adoption: nothing may be launched or stopped", e)
		}
	}
	// An adopted instance that dies is noticed and replaced.
	victim := f2.Instances()[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dead adopted instance replaced", func() bool {
		ss := inService(f2)
		return len(ss) == 3 && !slices.ContainsFunc(ss, func(s InstanceStatus) bool { return s.ID == victim.ID })
	})
}

// TestFleetAdoptionLeavesReusedPidAlone: a record whose pid runs another
// program now is reported and that program is untouched; the fleet
// launches its desired capacity.
func TestFleetAdoptionLeavesReusedPidAlone(t *testing.T) {
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	id, err := proc.IdentityOf(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id.StartTime++
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.StateFile = filepath.Join(t.TempDir(), "fleet.json")
	rec := fleetRecord{Capacity: Capacity{Min: 2, Desired: 2, Max: 6}, Instances: []instanceRecord{{
		ID: "i-0reused", Zone: cfg.Zones[0].Name, Addr: cfg.Zones[0].CIDR.Addr().Next().Next(), Port: 1, Process: id, State: StateInService,
	}}}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(cfg.StateFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f := startFleet(t, cfg)
	a := f.Adoption()
	if len(a.LeftAlone) != 1 || !strings.Contains(a.LeftAlone[0], "i-0reused") || len(a.Adopted) != 0 {
		t.Fatalf("adoption %+v, want i-0reused left alone", a)
	}
	waitFor(t, "2 in service", func() bool { return len(inService(f)) == 2 })
	if !alive(other.Process.Pid) {
		t.Fatal("the program that reused the pid was killed")
	}
}
