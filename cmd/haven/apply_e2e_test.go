package main

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/plan"
	"github.com/haven-platform/haven/internal/testkit"
	"github.com/haven-platform/haven/internal/workload/courses"
)

// TestPlanAndApplyUnderLoad changes a running region with haven apply
// while logged-in users walk the site: the in-place changes (fleet max, a
// scaling target, the health check interval, the deregistration delay),
// then the rolling ones (instance size, an app env variable), with no
// failed request; a refused change exits non-zero naming the field and
// leaves the region untouched; a daemon killed in the middle of a rolling
// apply, then haven up on the new spec, ends on the new spec in full and
// the journal says so.
func TestPlanAndApplyUnderLoad(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{Students: 20, Courses: 3})
	edit(t, r.SpecFile, "grace_period: 5s}", "grace_period: 5s, scaling: [{target_tracking: cpu, target: 50}]}")
	r.Up(ctx)
	st := r.StatusJSON(ctx)
	if st.Spec.Hash == "" || st.Spec.By != "up" {
		t.Fatalf("status spec %+v: want the hash recorded by up", st.Spec)
	}
	// An unchanged spec plans no change.
	out, errOut, err := r.Haven(ctx, "plan", "--json")
	var p plan.Plan
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || !p.Empty() {
		t.Fatalf("plan --json of the unchanged spec: %v %s\n%s", err, errOut, out)
	}

	// Logged-in load for the whole test.
	site, users, err := drill.OpenSite(ctx, st, 4, courses.Workload{Password: courses.DefaultPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if path, err := site.Step(ctx, u); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, path+": "+err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()

	apply := func(what string, want plan.Action, edits ...string) {
		t.Helper()
		for i := 0; i < len(edits); i += 2 {
			edit(t, r.SpecFile, edits[i], edits[i+1])
		}
		out, errOut, err := r.Haven(ctx, "plan", "--json")
		var p plan.Plan
		if err != nil || json.Unmarshal([]byte(out), &p) != nil || p.Empty() {
			t.Fatalf("%s: plan: %v %s\n%s", what, err, errOut, out)
		}
		for _, c := range p.Changes {
			if c.Action != want {
				t.Errorf("%s: %s planned %s, want %s", what, c.Field, c.Action, want)
			}
		}
		out, errOut, err = r.Haven(ctx, "apply", "--auto-approve")
		if err != nil || !strings.Contains(out, "Apply complete") {
			t.Fatalf("%s: apply: %v\n%s\n%s\ndaemon log:\n%s", what, err, out, errOut, r.Tail("daemon.log"))
		}
		if st := r.StatusJSON(ctx); st.Spec.Hash != p.To || st.Spec.LastApply == nil || st.Spec.LastApply.Outcome != plan.OutcomeApplied {
			t.Errorf("%s: status spec %+v, want %s applied", what, st.Spec, p.To)
		}
		t.Logf("%s: %d changes applied; %d requests ok, %d failed so far", what, len(p.Changes), ok.Load(), failed.Load())
	}
	apply("in place", plan.InPlace,
		"max: 6,", "max: 7,",
		"target: 50}", "target: 60}",
		"interval: 300ms", "interval: 400ms",
		"deregistration_delay: 2s", "deregistration_delay: 3s")
	if st := r.StatusJSON(ctx); st.Fleet.Max != 7 || st.LB.IntervalMS != 400 {
		t.Errorf("after the in-place apply: max %d, interval %d ms; want 7, 400", st.Fleet.Max, st.LB.IntervalMS)
	}
	before := instanceIDs(r.StatusJSON(ctx))
	apply("rolling", plan.Rolling,
		"cpu: 0.5", "cpu: 0.4",
		"  port:", "  env: {GREETING: hello}\n  port:")
	after := instanceIDs(r.StatusJSON(ctx))
	for id := range before {
		if after[id] {
			t.Errorf("instance %s survived the rolling apply", id)
		}
	}

	// A refused change: non-zero, names the field and why, region untouched.
	held := r.StatusJSON(ctx)
	edit(t, r.SpecFile, "database: {", "database: {durability: required, ")
	out, errOut, err = r.Haven(ctx, "apply", "--auto-approve")
	if err == nil || !strings.Contains(errOut, "database.durability") || !strings.Contains(errOut, "failover controller") {
		t.Errorf("refused apply: err %v, stderr %q; want non-zero naming database.durability and why", err, errOut)
	}
	if st := r.StatusJSON(ctx); st.Spec.Hash != held.Spec.Hash || !sameKeys(instanceIDs(st), instanceIDs(held)) {
		t.Errorf("a refused apply touched the region: spec %s → %s", held.Spec.Hash, st.Spec.Hash)
	}
	edit(t, r.SpecFile, "database: {durability: required, ", "database: {")
	stopLoad()
	if failed.Load() != 0 || ok.Load() < 50 {
		t.Errorf("under apply: %d requests ok, %d failed (first: %v); want 0 failed", ok.Load(), failed.Load(), firstErr.Load())
	}

	// kill -9 in the middle of a rolling apply, then up on the new spec.
	edit(t, r.SpecFile, "GREETING: hello", "GREETING: again")
	pl, _ := r.Client.Plan(ctx, specReq(t, r.SpecFile))
	applyDone := make(chan error, 1)
	go func() { _, _, err := r.Haven(ctx, "apply", "--auto-approve"); applyDone <- err }()
	deadline := time.Now().Add(time.Minute)
	for {
		if ss := r.StatusJSON(ctx).Spec; ss.LastApply != nil && ss.LastApply.To == pl.To {
			break
		}
		if j, err := os.ReadFile(r.StateDir + "/spec/apply.json"); err == nil && strings.Contains(string(j), pl.To) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the apply never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	daemon := r.StatusJSON(ctx).PID
	if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitGone(ctx, daemon)
	if err := <-applyDone; err == nil {
		t.Fatal("apply succeeded although its daemon was killed")
	}
	r.Up(ctx)
	st = r.StatusJSON(ctx)
	t.Logf("after kill -9 mid-apply and up: spec %s, last apply %+v", st.Spec.Hash, st.Spec.LastApply)
	if st.Spec.Hash != pl.To || st.Spec.LastApply == nil || st.Spec.LastApply.Outcome != plan.OutcomeCompletedByUp {
		t.Errorf("after kill -9 mid-apply and up: spec %+v; want %s, last apply %q", st.Spec, pl.To, plan.OutcomeCompletedByUp)
	}
	if st.Spec.Drift == nil && st.Spec.Hash != pl.To {
		t.Error("no drift reported")
	}
}

func edit(t *testing.T, file, old, repl string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("spec %s lacks %q:\n%s", file, old, b)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, repl, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func specReq(t *testing.T, file string) api.SpecRequest {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return api.SpecRequest{File: file, Spec: string(b)}
}

func instanceIDs(st api.Status) map[string]bool {
	m := map[string]bool{}
	for _, in := range st.Instances {
		if in.State == "in-service" {
			m[in.ID] = true
		}
	}
	return m
}

func sameKeys(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
