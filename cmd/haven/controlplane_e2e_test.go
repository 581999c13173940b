package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/testkit"
)

// upgradeBinary builds haven with another version string next to a copy
// of courses, for the upgrade rounds.
func upgradeBinary(t *testing.T, r *testkit.Region) string {
	t.Helper()
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/haven-platform/haven/internal/version.Version=e2e-next", "-o", dir+"/", "./cmd/haven")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the upgrade binary: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(r.Bin, "courses"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "courses"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "haven")
}

// TestControlPlaneLossDrill runs the drill on a real Multi-AZ region:
// crash rounds (kill -9 of the daemon, then up), upgrade rounds (up
// --takeover of another build) and a kill of the load balancer process,
// under logged-in load and ledger writers. The data plane must not notice:
// no failed request, no lost write, every instance and database node
// adopted with its pid, no failover; the load balancer moves to the new
// build by a hot restart; a killed load balancer process is replaced.
func TestControlPlaneLossDrill(t *testing.T) {
	ctx := testCtx(t, 12*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{MultiAZ: true, Students: 20, Courses: 3})
	st := r.Up(ctx)
	next := upgradeBinary(t, r)
	out, errOut, err := r.Haven(ctx, "drill", "control-plane-loss", "-f", r.SpecFile, "--rounds", "2", "--upgrade-rounds", "2",
		"--lb-kill-rounds", "1", "--upgrade-binary", next, "--users", "5", "--rate", "10", "--json")
	var rep drill.ControlPlaneLossReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("drill: %v / %v\nstdout:\n%s\nstderr:\n%s\ndaemon log:\n%s", err, jerr, out, errOut, r.Tail("daemon.log"))
	}
	t.Logf("drill: pass %v, %d requests, %d failed, %d lb-kill failed; ack lost %d; adopted %d + %d db; relaunched %d; failovers %d; ready max %.0f ms; lb back max %.0f ms; reasons %v",
		rep.Pass, rep.Requests, rep.FailedRequests, rep.LBKillFailedRequests, rep.AcknowledgedLost, rep.Adopted, rep.DBNodesAdopted,
		rep.Relaunched, rep.Failovers, rep.ReadyMSMax, rep.LBBackMSMax, rep.Reasons)
	if len(rep.RoundResults) != 5 {
		t.Fatalf("%d rounds, want 5\n%s", len(rep.RoundResults), errOut)
	}
	instances := len(st.Instances)
	if rep.Adopted != 4*instances || rep.DBNodesAdopted != 4*2 {
		t.Errorf("adopted %d instances and %d database nodes over 4 rounds, want %d and 8", rep.Adopted, rep.DBNodesAdopted, 4*instances)
	}
	if rep.FailedRequests != 0 || rep.AcknowledgedLost != 0 || rep.Relaunched != 0 || rep.Failovers != 0 {
		t.Errorf("failed %d, lost %d, relaunched %d, failovers %d: want all 0", rep.FailedRequests, rep.AcknowledgedLost, rep.Relaunched, rep.Failovers)
	}
	if rep.OK == 0 {
		t.Error("no ledger write committed")
	}
	for _, rr := range rep.RoundResults {
		if !rr.SamePIDs {
			t.Errorf("round %d (%s): an instance or database node changed pid", rr.Round, rr.Kind)
		}
		if rr.Kind == drill.CPUpgrade && (rr.LBAfter == rr.LBBefore || rr.LBVersionAfter != rr.VersionAfter || rr.VersionAfter == rr.VersionBefore) {
			t.Errorf("round %d: upgrade %s → %s, load balancer %d → %d (version %s): want a new load balancer of the new build", rr.Round, rr.VersionBefore, rr.VersionAfter, rr.LBBefore, rr.LBAfter, rr.LBVersionAfter)
		}
		if rr.Kind == drill.CPLBKill && (rr.LBAfter == rr.LBBefore || rr.LBBackMS == 0) {
			t.Errorf("round %d: load balancer %d → %d, back after %.0f ms", rr.Round, rr.LBBefore, rr.LBAfter, rr.LBBackMS)
		}
	}
	if err != nil && rep.Pass {
		t.Errorf("drill exited with %v but reported a pass", err)
	}
	if !rep.Pass {
		t.Errorf("drill failed: %v", rep.Reasons)
	}
	// Whatever was adopted, down leaves nothing behind.
	before := r.Processes()
	if _, errOut, err := r.Haven(ctx, "down"); err != nil {
		t.Fatalf("down: %v\n%s", err, errOut)
	}
	assertGone(t, ctx, r, before)
}

// TestTwoDaemonsAndAReusedPid: a second daemon on a running region's state
// dir refuses, naming the pid that holds it; after a crash, an instance
// whose recorded pid now runs another program is left alone (that program
// untouched), reported, and replaced, while the others are adopted.
func TestTwoDaemonsAndAReusedPid(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{Students: 10, Courses: 2})
	st := r.Up(ctx)

	// Two daemons never run on one state dir.
	cmd := exec.CommandContext(ctx, filepath.Join(r.Bin, "haven"), "daemon", "-f", r.SpecFile, "--state-dir", r.StateDir)
	cmd.Env = r.Env()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another haven daemon is using it") || !strings.Contains(string(out), "pid "+strconv.Itoa(st.PID)) {
		t.Errorf("a second daemon: %v\n%s\nwant a refusal naming pid %d", err, out, st.PID)
	}
	if _, errOut, err := r.Haven(ctx, "up", "--detach"); err == nil || !strings.Contains(errOut, "daemon pid "+strconv.Itoa(st.PID)) {
		t.Errorf("a second up: %v\n%s\nwant a refusal naming pid %d", err, errOut, st.PID)
	}
	if got, err := r.Client.Status(ctx); err != nil || got.PID != st.PID || got.Phase != "ready" {
		t.Fatalf("the first daemon after the refusals: %+v, %v", got.PID, err)
	}

	// A crash; one instance dies with it and its pid goes to another program.
	if len(st.Instances) < 2 {
		t.Fatalf("%d instances, want 2", len(st.Instances))
	}
	victim, kept := st.Instances[0], st.Instances[1]
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitGone(ctx, st.PID)
	if err := syscall.Kill(-victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitGone(ctx, victim.PID)
	other := exec.Command("sleep", "300")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	reuse(t, filepath.Join(r.StateDir, "fleet.json"), victim.ID, other.Process.Pid)

	after := r.Up(ctx)
	a := after.Adoption
	if a == nil {
		t.Fatal("no adoption reported after the crash")
	}
	if len(a.LeftAlone) != 1 || !strings.Contains(a.LeftAlone[0], victim.ID) || !strings.Contains(a.LeftAlone[0], "reused") {
		t.Errorf("left alone %v, want %s (pid reused)", a.LeftAlone, victim.ID)
	}
	if len(a.Instances) != 1 || a.Instances[0] != kept.ID {
		t.Errorf("adopted %v, want [%s]", a.Instances, kept.ID)
	}
	if !testkit.Alive(other.Process.Pid) {
		t.Error("the program that reused the pid was killed")
	}
	for _, in := range after.Instances {
		if in.ID == kept.ID && in.PID != kept.PID {
			t.Errorf("%s: pid %d after the restart, want %d (adopted)", kept.ID, in.PID, kept.PID)
		}
		if in.ID == victim.ID {
			t.Errorf("%s still in the fleet", victim.ID)
		}
	}
	waitFor(t, ctx, "the fleet back at desired capacity", func() bool {
		s, err := r.Client.Status(ctx)
		return err == nil && s.Fleet.Healthy >= s.Fleet.Desired
	})
}

// reuse rewrites the fleet record of instance id to name pid, as if the
// pid were reused by another program after the instance died.
func reuse(t *testing.T, path, id string, pid int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.IdentityOf(pid); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range rec["instances"].([]any) {
		m := in.(map[string]any)
		if m["id"] == id {
			p := m["process"].(map[string]any)
			p["pid"] = pid // the instance's start time and namespace stay: another program now
			found = true
		}
	}
	if !found {
		t.Fatalf("no record of %s in %s", id, path)
	}
	b, _ = json.Marshal(rec)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
