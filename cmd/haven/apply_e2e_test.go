package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/plan"
	"github.com/haven-platform/haven/internal/testkit"
	"github.com/haven-platform/haven/internal/workload/courses"
)

// TestPlanAndApplyUnderLoad changes a running region with haven apply
// while logged-in users walk the site: the in-place changes (fleet max, a
// scaling target, the health check interval, the deregistration delay),
// the database endpoint's host address (a restart of the endpoint), then
// the rolling ones (instance size, an app env variable), with no
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
	load := startLoad(t, ctx, st)
	defer load.stop()

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
		t.Logf("%s: %d changes applied; %d requests ok, %d failed so far", what, len(p.Changes), load.ok.Load(), load.failed.Load())
	}
	apply("in place", plan.InPlace,
		"max: 6,", "max: 7,",
		"target: 50}", "target: 60}",
		"interval: 300ms", "interval: 400ms",
		"deregistration_delay: 2s", "deregistration_delay: 3s",
		"metrics: {listen:", "alarms: {thresholds: {p99_latency_seconds: 0.8}}\nmetrics: {listen:")
	if st := r.StatusJSON(ctx); st.Fleet.Max != 7 || st.LB.IntervalMS != 400 {
		t.Errorf("after the in-place apply: max %d, interval %d ms; want 7, 400", st.Fleet.Max, st.LB.IntervalMS)
	}
	if a := alarmOf(alarmStatus(t, ctx, r), alarms.AlarmP99Latency); a.Definition.Threshold != 0.8 {
		t.Errorf("after the in-place apply: %s threshold %g, want 0.8", alarms.AlarmP99Latency, a.Definition.Threshold)
	}
	// The database endpoint in a VPC: only the host's address moves (the
	// instances reach the database at its VPC address, which the secret
	// names); the old host port closes.
	oldEP, newEP := fmt.Sprintf("127.0.0.1:%d", r.Ports.DB), fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	apply("endpoint", plan.Restart, "endpoint: "+oldEP, "endpoint: "+newEP)
	if c, err := net.DialTimeout("tcp", oldEP, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the old endpoint %s still accepts connections", oldEP)
	}
	if c, err := net.DialTimeout("tcp", newEP, 2*time.Second); err != nil {
		t.Errorf("the new endpoint %s: %v", newEP, err)
	} else {
		c.Close()
	}
	if st := r.StatusJSON(ctx); st.Endpoints.Database != newEP {
		t.Errorf("status endpoint %s, want %s", st.Endpoints.Database, newEP)
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
	load.stop()
	if load.failed.Load() != 0 || load.ok.Load() < 50 {
		t.Errorf("under apply: %d requests ok, %d failed (first: %v); want 0 failed", load.ok.Load(), load.failed.Load(), load.firstErr.Load())
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

// TestApplyMovesTheDatabaseEndpoint changes database.endpoint of a running
// region on loopback ranges (where the secret names database.endpoint)
// under logged-in load. First a change that fails (the new port is held
// by another program) together with in-place changes: apply exits
// non-zero, the in-place changes are reverted, the recorded spec is the
// old one and the journal says rolled back. Then the move: the secret
// names the new port as soon as apply returns, every GetSecretValue after
// that returns that version (the audit trail), the instances read it again
// and reconnect, the old port is closed, and no request fails.
func TestApplyMovesTheDatabaseEndpoint(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{Students: 10, Courses: 2, Env: []string{"HAVEN_NETWORK=loopback"}})
	st := r.Up(ctx)
	st = r.StatusJSON(ctx)
	oldEP := fmt.Sprintf("127.0.0.1:%d", r.Ports.DB)
	info, err := r.Client.SecretsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := secretValue(t, ctx, r.Client, info.DBSecret); v.Port != r.Ports.DB {
		t.Fatalf("the secret names port %d before any change, want %d", v.Port, r.Ports.DB)
	}
	load := startLoad(t, ctx, st)
	defer load.stop()

	// A change that fails: rolled back, recorded spec unchanged.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	heldEP := held.Addr().String()
	edit(t, r.SpecFile, "max: 6,", "max: 7,")
	edit(t, r.SpecFile, "interval: 300ms", "interval: 400ms")
	edit(t, r.SpecFile, "endpoint: "+oldEP, "endpoint: "+heldEP)
	out, errOut, err := r.Haven(ctx, "apply", "--auto-approve")
	held.Close()
	if err == nil || !strings.Contains(errOut, "another program listens on "+heldEP) {
		t.Fatalf("apply to a held port: err %v; want non-zero naming the held port\n%s\n%s", err, out, errOut)
	}
	after := r.StatusJSON(ctx)
	if after.Spec.Hash != st.Spec.Hash || after.Spec.LastApply == nil || after.Spec.LastApply.Outcome != plan.OutcomeRolledBack ||
		!strings.Contains(after.Spec.LastApply.Error, heldEP) {
		t.Errorf("after the failed apply: spec %+v; want the recorded %s and the last apply rolled back naming %s", after.Spec, st.Spec.Hash, heldEP)
	}
	if after.Fleet.Max != 6 || after.LB.IntervalMS != 300 || after.Endpoints.Database != oldEP {
		t.Errorf("after the failed apply: max %d, interval %d ms, endpoint %s; want 6, 300 ms, %s (reverted)",
			after.Fleet.Max, after.LB.IntervalMS, after.Endpoints.Database, oldEP)
	}
	if v, _ := secretValue(t, ctx, r.Client, info.DBSecret); v.Port != r.Ports.DB {
		t.Errorf("the secret names port %d after the failed apply, want %d", v.Port, r.Ports.DB)
	}
	if j, err := os.ReadFile(r.StateDir + "/spec/apply.json"); err != nil || !strings.Contains(string(j), `"rolled back"`) {
		t.Errorf("journal after the failed apply: %v\n%s", err, j)
	}
	edit(t, r.SpecFile, "max: 7,", "max: 6,")
	edit(t, r.SpecFile, "interval: 400ms", "interval: 300ms")

	// The move.
	newPort := testkit.FreePort(t)
	newEP := fmt.Sprintf("127.0.0.1:%d", newPort)
	edit(t, r.SpecFile, "endpoint: "+heldEP, "endpoint: "+newEP)
	out, errOut, err = r.Haven(ctx, "plan")
	if err != nil || !strings.Contains(out, "-/+ database.endpoint: "+oldEP+" → "+newEP) || !strings.Contains(out, "restart (database endpoint)") {
		t.Fatalf("plan of the move: %v\n%s\n%s", err, out, errOut)
	}
	started := time.Now()
	out, errOut, err = r.Haven(ctx, "apply", "--auto-approve")
	if err != nil || !strings.Contains(out, "Apply complete") {
		t.Fatalf("apply of the move: %v\n%s\n%s\ndaemon log:\n%s", err, out, errOut, r.Tail("daemon.log"))
	}
	applied := time.Now()
	v, version := secretValue(t, ctx, r.Client, info.DBSecret)
	if v.Port != newPort || v.Host != "127.0.0.1" {
		t.Fatalf("the secret names %s:%d as apply returns, want %s", v.Host, v.Port, newEP)
	}
	if c, err := net.DialTimeout("tcp", oldEP, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the old endpoint %s still accepts connections", oldEP)
	}
	if after := r.StatusJSON(ctx); after.Endpoints.Database != newEP {
		t.Errorf("status endpoint %s, want %s", after.Endpoints.Database, newEP)
	}
	// The instances' connections were cut; each reads the secret again
	// before its next connection. Wait for every instance in service to
	// have read the new version, under load.
	inService := instanceIDs(r.StatusJSON(ctx))
	deadline := time.Now().Add(time.Minute)
	var reads []api.AuditRecord
	for {
		reads, err = r.Client.SecretsAudit(ctx, api.AuditQuery{Since: started, Action: "GetSecretValue"})
		if err != nil {
			t.Fatal(err)
		}
		readers := map[string]bool{}
		for _, rec := range reads {
			if rec.Instance != "" && rec.Result == "Success" && rec.VersionID == version {
				readers[rec.Instance] = true
			}
		}
		if len(readers) >= len(inService) || time.Now().After(deadline) {
			t.Logf("instances that read the secret after the move: %d of %d in service", len(readers), len(inService))
			if len(readers) < len(inService) {
				t.Errorf("only %d of %d instances read the secret again within a minute of the move", len(readers), len(inService))
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // more load through the new endpoint
	load.stop()
	reads, err = r.Client.SecretsAudit(ctx, api.AuditQuery{Since: applied, Action: "GetSecretValue"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range reads {
		if rec.Result != "Success" || rec.Time.Before(applied) {
			continue
		}
		n++
		if rec.VersionID != version {
			t.Errorf("GetSecretValue at %s by %s%s returned version %s, not %s (the one naming port %d)",
				rec.Time.Format(time.RFC3339Nano), rec.Instance, rec.Principal, rec.VersionID, version, newPort)
		}
	}
	t.Logf("after the move: %d GetSecretValue answers, all version %s (port %d); %d requests ok, %d failed",
		n, version, newPort, load.ok.Load(), load.failed.Load())
	if load.failed.Load() != 0 || load.ok.Load() < 20 {
		t.Errorf("under the endpoint move: %d requests ok, %d failed (first: %v); want 0 failed", load.ok.Load(), load.failed.Load(), load.firstErr.Load())
	}
}

// dbSecret is the part of the database secret a test checks.
type dbSecret struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// secretValue reads AWSCURRENT of the database secret as the operator
// and returns where it says the database is, and its version.
func secretValue(t *testing.T, ctx context.Context, c *api.Client, id string) (dbSecret, string) {
	t.Helper()
	oc, err := c.OperatorCredentials(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(aws.Config{Region: oc.Region, Credentials: credentials.NewStaticCredentialsProvider(oc.AccessKeyID, oc.SecretAccessKey, oc.SessionToken)},
		func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(oc.Endpoint) })
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	var v dbSecret
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil {
		t.Fatalf("decode secret: %v", err)
	}
	return v, aws.ToString(out.VersionId)
}

// siteLoad is logged-in users walking the site until stop.
type siteLoad struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       func()
}

func startLoad(t *testing.T, ctx context.Context, st api.Status) *siteLoad {
	t.Helper()
	site, users, err := drill.OpenSite(ctx, st, 4, courses.Workload{Password: courses.DefaultPassword})
	if err != nil {
		t.Fatal(err)
	}
	l := &siteLoad{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if path, err := site.Step(ctx, u); err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, path+": "+err.Error())
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			site.Close()
		})
	}
	return l
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
