package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/release"
	"github.com/haven-platform/haven/internal/testkit"
)

// contractBuild is a build of the courses app whose migration list adds a
// breaking (contract) migration after the app's own (%[1]s, the JSON list):
// `migrations --json` says so, and anything else runs the real app (%[2]s),
// so once allowed it serves like any good build.
const contractBuild = `#!/bin/sh
if [ "$1" = migrations ]; then
  cat <<'EOF'
%[1]s
EOF
  exit 0
fi
exec %[2]s "$@"
`

// contractMigrations is the app's own migration list (from `courses
// migrations --json`) with a breaking one appended, and that one's
// description as a refusal names it.
func contractMigrations(t *testing.T, courses string) (list, named string) {
	t.Helper()
	out, err := exec.Command(courses, "migrations", "--json").Output()
	if err != nil {
		t.Fatalf("courses migrations --json: %v", err)
	}
	var ms []map[string]any
	if err := json.Unmarshal(out, &ms); err != nil || len(ms) == 0 {
		t.Fatalf("courses migrations --json: %v %s", err, out)
	}
	n := len(ms) + 1
	ms = append(ms, map[string]any{"version": n, "name": "drop sessions.id_token", "breaking": true,
		"reason": fmt.Sprintf("versions before %d write sessions.id_token", n)})
	b, err := json.Marshal(ms)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), fmt.Sprintf("migration %d (drop sessions.id_token)", n)
}

// TestDeployBreakingThenDaemonCrash, on a real region: a build that adds a
// breaking migration is refused without --allow-breaking, naming the
// migration, and starts nothing; with it, the rollout starts, the daemon is
// killed (SIGKILL) once the rollout has launched an instance of the new
// version, and `haven up` takes the rollout up again from its record. The
// rollout ends succeeded, its record says it was resumed once and which
// breaking migration it was allowed, and every instance runs the version
// the region records as current: nothing half-deployed without a record.
func TestDeployBreakingThenDaemonCrash(t *testing.T) {
	ctx := testCtx(t, 6*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{Students: 20, Courses: 3})
	raw, err := os.ReadFile(r.SpecFile)
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(raw), "  command: [courses, serve]\n", "  command: [courses, serve]\n  migrations: [migrations, --json]\n", 1)
	spec = strings.Replace(spec, "grace_period: 5s}", "grace_period: 5s, instance_refresh: {checkpoints: [50, 100], bake: 1s, health_timeout: 30s, max_p99_increase: 5s}}", 1)
	if spec == string(raw) || !strings.Contains(spec, "migrations: [") || !strings.Contains(spec, "instance_refresh") {
		t.Fatalf("could not set app.migrations and fleet.instance_refresh in the test spec:\n%s", raw)
	}
	if err := os.WriteFile(r.SpecFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	st := r.Up(ctx)

	// Instances see a private /tmp, where the test binaries are: the build
	// runs a copy of the app from /run instead.
	appDir, err := os.MkdirTemp("/run", "haven-deploy-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(appDir) })
	app, err := os.ReadFile(filepath.Join(r.Bin, "courses"))
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(appDir, "courses-contract")
	migrations, named := contractMigrations(t, filepath.Join(r.Bin, "courses"))
	if os.Chmod(appDir, 0o755) != nil || os.WriteFile(filepath.Join(appDir, "courses"), app, 0o755) != nil ||
		os.WriteFile(build, []byte(fmt.Sprintf(contractBuild, migrations, filepath.Join(appDir, "courses"))), 0o755) != nil {
		t.Fatalf("write the contract build in %s", appDir)
	}

	// Refused without --allow-breaking, naming the migration; nothing starts.
	out, errOut, err := r.Haven(ctx, "deploy", "--artifact", build, "--wait=false")
	if err == nil {
		t.Fatalf("deploy of a breaking build succeeded without --allow-breaking:\n%s%s", out, errOut)
	}
	for _, want := range []string{"breaking migration", named + ": versions before", "write sessions.id_token", "--allow-breaking"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal does not say %q:\n%s", want, errOut)
		}
	}
	if ds := deployStatus(t, ctx, r); ds.Active != nil {
		t.Fatalf("a refused deploy started rollout %s", ds.Active.ID)
	}

	// Allowed: the rollout starts; kill -9 the daemon once it has launched
	// an instance of the new version.
	var ro release.Rollout
	var launched []string
	if err := r.Client.Do(ctx, http.MethodPost, "/v1/deploys", release.DeployRequest{Artifact: build, AllowBreaking: true}, &ro); err != nil {
		t.Fatalf("deploy with --allow-breaking: %v", err)
	}
	for {
		ds := deployStatus(t, ctx, r)
		if ds.Active == nil {
			t.Fatalf("rollout %s ended before the daemon could be killed mid-way: %+v", ro.ID, ds.Last)
		}
		if len(ds.Active.Launched) > 0 {
			t.Logf("killing the daemon (pid %d) during %s: phase %s, step %d, launched %v, instances %v",
				st.PID, ro.ID, ds.Active.Phase, ds.Active.Step, ds.Active.Launched, ds.Instances)
			launched = ds.Active.Launched
			break
		}
		if ctx.Err() != nil {
			t.Fatal("timed out waiting for the rollout to launch an instance")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitGone(ctx, st.PID)

	r.Up(ctx)
	// The instances outlived the daemon: the new one adopts them, the
	// rollout's new-version instance too, and resumes with it.
	if a := r.StatusJSON(ctx).Adoption; a == nil || len(a.Instances) < 3 || !slices.Contains(a.Instances, launched[0]) || len(a.Relaunched) != 0 {
		t.Errorf("after the crash: adoption %+v; want the 2 old instances and the rollout's %s adopted, none relaunched", a, launched[0])
	}
	var last *release.Rollout
	var ds release.Status
	for {
		ds = deployStatus(t, ctx, r)
		if ds.Active == nil && ds.Last != nil && ds.Last.ID == ro.ID && ds.Last.Phase.Final() {
			last = ds.Last
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for the resumed rollout to end: %+v\ndaemon log:\n%s", ds, r.Tail("daemon.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last.Phase != release.PhaseSucceeded || len(last.Resumed) != 1 {
		t.Errorf("rollout %s after the restart: phase %s (gate %q: %s), resumed %v; want succeeded, resumed once",
			last.ID, last.Phase, last.Gate, last.Reason, last.Resumed)
	}
	if !strings.Contains(last.AllowedBreaking, named) {
		t.Errorf("the record does not name the allowed breaking migration: %q", last.AllowedBreaking)
	}
	// The fleet settles on the current version: every live instance runs it.
	for ds.Instances[ds.Current.ID] != 2 || len(ds.Instances) != 1 {
		if ctx.Err() != nil {
			t.Fatalf("instances per version %v, current %s: want 2 of the current and nothing else", ds.Instances, ds.Current.ID)
		}
		time.Sleep(200 * time.Millisecond)
		ds = deployStatus(t, ctx, r)
	}
	if ds.Current.ID != last.Target {
		t.Errorf("current version %s, want the rollout's target %s", ds.Current.ID, last.Target)
	}
	evs, err := r.Client.Events(ctx, api.EventQuery{Component: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	var resumed bool
	for _, e := range evs {
		resumed = resumed || (e.Subject == ro.ID && e.Kind == "resumed")
	}
	if !resumed {
		t.Errorf("the restarted daemon's deploy events lack %s's resumed event: %+v", ro.ID, evs)
	}
	// The crashed daemon's events are in the event log on disk.
	evlog, err := os.ReadFile(filepath.Join(r.StateDir, "logs", "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(evlog), `"allowed-breaking"`) {
		t.Errorf("events.log has no allowed-breaking event for %s", ro.ID)
	}

	// `haven deploy rollback VERSION` to the version before, under
	// logged-in load: a rollout like any other (rolling, gated), no
	// request failed, and the whole fleet back on that version. The
	// latency gate's limit is 5 s here: it judges p99 from 20 requests on,
	// where p99 is the slowest request, and a freshly started instance's
	// first requests on a busy machine took 1.5 s (a run rolled back on
	// that; the bad-deploy drill is where the latency gate is proven).
	load := startLoad(t, ctx, r.StatusJSON(ctx))
	out, errOut, err = r.Haven(ctx, "deploy", "rollback", last.From, "--json")
	load.stop()
	var rb release.Rollout
	if err != nil || json.Unmarshal([]byte(out), &rb) != nil {
		t.Fatalf("haven deploy rollback %s: %v\n%s\n%s", last.From, err, out, errOut)
	}
	if rb.Requested != "rollback" || rb.Target != last.From || rb.Phase != release.PhaseSucceeded || len(rb.Launched) == 0 {
		t.Errorf("rollback rollout %s: requested %s, target %s (want %s), phase %s (gate %q: %s), launched %v; want a succeeded rolling rollout",
			rb.ID, rb.Requested, rb.Target, last.From, rb.Phase, rb.Gate, rb.Reason, rb.Launched)
	}
	for ds = deployStatus(t, ctx, r); ds.Current.ID != last.From || ds.Instances[last.From] != 2 || len(ds.Instances) != 1; ds = deployStatus(t, ctx, r) {
		if ctx.Err() != nil {
			t.Fatalf("after the rollback: current %s, instances per version %v; want 2 on %s and nothing else", ds.Current.ID, ds.Instances, last.From)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if load.failed.Load() != 0 || load.ok.Load() == 0 {
		t.Errorf("during the rollback: %d requests ok, %d failed (first: %v); want 0 failed", load.ok.Load(), load.failed.Load(), load.firstErr.Load())
	}
	t.Logf("rollback %s → %s: %d requests ok, 0 failed", rb.From, rb.Target, load.ok.Load())
}

func deployStatus(t *testing.T, ctx context.Context, r *testkit.Region) release.Status {
	t.Helper()
	var st release.Status
	for {
		err := r.Client.Do(ctx, http.MethodGet, "/v1/deploys/status", nil, &st)
		if err == nil {
			return st
		}
		if ctx.Err() != nil {
			t.Fatalf("deploy status: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
