package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/haven-platform/haven/internal/clock"
)

// fakeRotator is a Rotator whose "resource" is a map of valid passwords, like a
// database with alternating users.
type fakeRotator struct {
	mu     sync.Mutex
	n      int
	failOn string
	calls  []string
	valid  map[string]bool // values the "database" accepts
}

func newFakeRotator(initial string) *fakeRotator {
	return &fakeRotator{valid: map[string]bool{initial: true}}
}

func (f *fakeRotator) record(step string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, step)
	if f.failOn == step {
		return fmt.Errorf("%s: injected failure", step)
	}
	return nil
}

func (f *fakeRotator) setFail(step string) { f.mu.Lock(); f.failOn = step; f.mu.Unlock() }

func (f *fakeRotator) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeRotator) CreateSecret(ctx context.Context, in StepInput) (string, error) {
	if err := f.record("createSecret"); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return fmt.Sprintf(`{"password":"rotated-%d"}`, f.n), nil
}

func (f *fakeRotator) SetSecret(ctx context.Context, in StepInput) error {
	if in.Pending == "" || in.Current == "" {
		return errors.New("setSecret without current and pending values")
	}
	if err := f.record("setSecret"); err != nil {
		return err
	}
	f.mu.Lock()
	f.valid[in.Pending] = true
	f.mu.Unlock()
	return nil
}

func (f *fakeRotator) TestSecret(ctx context.Context, in StepInput) error {
	if err := f.record("testSecret"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.valid[in.Pending] {
		return errors.New("login with pending value failed")
	}
	return nil
}

func (f *fakeRotator) FinishSecret(ctx context.Context, in StepInput) error {
	return f.record("finishSecret")
}

func openTestStore(t testing.TB, dir string, clk clock.Clock, fp Failpoint) *Store {
	t.Helper()
	s, err := OpenStore(StoreConfig{Dir: dir, Region: testRegion, Account: testAccount, Clock: clk, Failpoint: fp, Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	return s
}

func current(t testing.TB, s *Store, name string) GetSecretValueOutput {
	t.Helper()
	out, err := s.GetSecretValue(GetSecretValueInput{SecretId: name})
	must(t, err)
	return out
}

func stages(t testing.TB, s *Store, name string) map[string][]string {
	t.Helper()
	d, err := s.DescribeSecret(DescribeSecretInput{SecretId: name})
	must(t, err)
	return d.VersionIdsToStages
}

func TestRotateMovesLabels(t *testing.T) {
	clk := clock.NewFake(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	s := openTestStore(t, t.TempDir(), clk, nil)
	cr, err := s.CreateSecret(CreateSecretInput{Name: "db", SecretString: aws.String(`{"password":"initial"}`)})
	must(t, err)
	v0 := cr.VersionId
	rot := newFakeRotator(`{"password":"initial"}`)
	d := NewDriver(s)
	d.Register("db", rot)

	clk.Advance(time.Hour)
	v1, err := d.Rotate(context.Background(), "db")
	must(t, err)
	if got, want := rot.Calls(), []string{"createSecret", "setSecret", "testSecret", "finishSecret"}; !slices.Equal(got, want) {
		t.Errorf("steps = %v, want %v", got, want)
	}
	if want := (map[string][]string{v0: {StagePrevious}, v1: {StageCurrent}}); !stagesEqual(stages(t, s, "db"), want) {
		t.Errorf("stages = %v, want %v", stages(t, s, "db"), want)
	}
	if c := current(t, s, "db"); c.VersionId != v1 || *c.SecretString != `{"password":"rotated-1"}` {
		t.Errorf("current = %s %q", c.VersionId, *c.SecretString)
	}
	desc, _ := s.DescribeSecret(DescribeSecretInput{SecretId: "db"})
	if desc.LastRotatedDate == nil || !time.Time(*desc.LastRotatedDate).Equal(clk.Now()) {
		t.Errorf("LastRotatedDate = %v", desc.LastRotatedDate)
	}

	// A second rotation: v0 loses every label (deprecated), v1 becomes previous.
	v2, err := d.Rotate(context.Background(), "db")
	must(t, err)
	if want := (map[string][]string{v1: {StagePrevious}, v2: {StageCurrent}}); !stagesEqual(stages(t, s, "db"), want) {
		t.Errorf("stages = %v, want %v", stages(t, s, "db"), want)
	}
	vs, err := s.ListSecretVersionIds(ListSecretVersionIdsInput{SecretId: "db", IncludeDeprecated: true})
	must(t, err)
	if len(vs.Versions) != 3 {
		t.Errorf("with deprecated: %d versions, want 3", len(vs.Versions))
	}
}

func TestRotateStepFailureKeepsCurrent(t *testing.T) {
	for _, step := range []string{"createSecret", "setSecret", "testSecret", "finishSecret"} {
		t.Run(step, func(t *testing.T) {
			s := openTestStore(t, t.TempDir(), clock.NewFake(time.Now()), nil)
			cr, err := s.CreateSecret(CreateSecretInput{Name: "db", SecretString: aws.String("v0")})
			must(t, err)
			rot := newFakeRotator("v0")
			rot.setFail(step)
			d := NewDriver(s)
			d.Register("db", rot)
			_, err = d.Rotate(context.Background(), "db")
			var se *StepError
			if !errors.As(err, &se) || se.Step != step {
				t.Fatalf("Rotate err = %v, want a StepError at %s", err, step)
			}
			if c := current(t, s, "db"); c.VersionId != cr.VersionId || *c.SecretString != "v0" {
				t.Fatalf("AWSCURRENT moved after %s failed", step)
			}
			// Retry with the fault gone: it resumes with the same pending version.
			st := stages(t, s, "db")
			var pending string
			for id, l := range st {
				if slices.Contains(l, StagePending) {
					pending = id
				}
			}
			if (step == "createSecret") != (pending == "") {
				t.Fatalf("pending version after %s failure = %q", step, pending)
			}
			rot.setFail("")
			v, err := d.Rotate(context.Background(), "db")
			must(t, err)
			if pending != "" && v != pending {
				t.Errorf("resume created version %s, want the pending %s", v, pending)
			}
			creates := 0
			for _, c := range rot.Calls() {
				if c == "createSecret" {
					creates++
				}
			}
			if want := map[bool]int{true: 2, false: 1}[step == "createSecret"]; creates != want {
				t.Errorf("createSecret ran %d times, want %d", creates, want)
			}
			if want := (map[string][]string{cr.VersionId: {StagePrevious}, v: {StageCurrent}}); !stagesEqual(stages(t, s, "db"), want) {
				t.Errorf("stages = %v, want %v", stages(t, s, "db"), want)
			}
		})
	}
}

// TestRotateCrashRestart simulates a crash after createSecret+setSecret: the
// process dies, a new one opens the same state dir and resumes (or rolls back).
func TestRotateCrashRestart(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"resume", "rollback"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			clk := clock.NewFake(time.Now())
			s1 := openTestStore(t, dir, clk, nil)
			cr, err := s1.CreateSecret(CreateSecretInput{Name: "db", SecretString: aws.String("v0")})
			must(t, err)
			rot := newFakeRotator("v0")
			rot.setFail("testSecret") // the "crash": the run stops after setSecret
			d1 := NewDriver(s1)
			d1.Register("db", rot)
			if _, err := d1.Rotate(ctx, "db"); err == nil {
				t.Fatal("first run succeeded")
			}
			// Restart: a new store and driver over the same directory.
			s2 := openTestStore(t, dir, clk, nil)
			d2 := NewDriver(s2)
			rot2 := newFakeRotator("v0")
			rot2.valid = rot.valid // the database kept what setSecret did
			d2.Register("db", rot2)
			if c := current(t, s2, "db"); c.VersionId != cr.VersionId {
				t.Fatalf("AWSCURRENT moved by the crashed run")
			}
			if mode == "rollback" {
				had, err := d2.Cancel(ctx, "db")
				if err != nil || !had {
					t.Fatalf("Cancel = %v, %v", had, err)
				}
				if want := (map[string][]string{cr.VersionId: {StageCurrent}}); !stagesEqual(stages(t, s2, "db"), want) {
					t.Fatalf("after rollback: %v", stages(t, s2, "db"))
				}
			}
			v, err := d2.Rotate(ctx, "db")
			must(t, err)
			wantCalls := []string{"setSecret", "testSecret", "finishSecret"}
			if mode == "rollback" {
				wantCalls = append([]string{"createSecret"}, wantCalls...)
			}
			if got := rot2.Calls(); !slices.Equal(got, wantCalls) {
				t.Errorf("steps after restart = %v, want %v", got, wantCalls)
			}
			if want := (map[string][]string{cr.VersionId: {StagePrevious}, v: {StageCurrent}}); !stagesEqual(stages(t, s2, "db"), want) {
				t.Errorf("stages = %v, want %v", stages(t, s2, "db"), want)
			}
		})
	}
}

func TestRotateSecretAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := e.client(e.admin)
	cr, err := admin.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("db"), SecretString: aws.String("v0")})
	must(t, err)
	_, err = admin.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("db")})
	wantCode(t, "RotateSecret without a rotator", err, "InvalidRequestException")

	rot := newFakeRotator("v0")
	e.srv.Driver().Register("db", rot)
	rot.setFail("setSecret")
	_, err = admin.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("db"), RotationRules: &smtypesRules})
	wantCode(t, "failing rotation", err, "InvalidRequestException")
	got, err := e.client(e.app).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	must(t, err)
	if aws.ToString(got.VersionId) != aws.ToString(cr.VersionId) {
		t.Fatal("AWSCURRENT moved after a failed rotation")
	}
	pending, err := e.client(e.app).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db"), VersionStage: aws.String("AWSPENDING")})
	must(t, err)

	rot.setFail("")
	out, err := admin.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("db")})
	must(t, err)
	if aws.ToString(out.VersionId) != aws.ToString(pending.VersionId) {
		t.Errorf("RotateSecret VersionId = %s, want resumed %s", aws.ToString(out.VersionId), aws.ToString(pending.VersionId))
	}
	desc, err := admin.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("db")})
	must(t, err)
	want := map[string][]string{aws.ToString(cr.VersionId): {"AWSPREVIOUS"}, aws.ToString(out.VersionId): {"AWSCURRENT"}}
	if !stagesEqual(desc.VersionIdsToStages, want) || !aws.ToBool(desc.RotationEnabled) || desc.LastRotatedDate == nil || desc.NextRotationDate == nil ||
		desc.RotationRules == nil || aws.ToInt64(desc.RotationRules.AutomaticallyAfterDays) != 7 {
		t.Errorf("DescribeSecret after rotation = %+v", desc)
	}

	// Stats: every call by action and result, the two finished rotations
	// (the refusal without a rotator is not one), the current version's
	// creation time, and never a value.
	st := e.srv.Stats()
	calls := map[CallCount]bool{}
	for _, c := range st.Calls {
		calls[c] = true
	}
	for _, want := range []CallCount{
		{"CreateSecret", "Success", 1}, {"RotateSecret", "InvalidRequestException", 2}, {"RotateSecret", "Success", 1},
		{"GetSecretValue", "Success", 2}, {"DescribeSecret", "Success", 1},
	} {
		if !calls[want] {
			t.Errorf("Stats().Calls lacks %+v: %+v", want, st.Calls)
		}
	}
	if want := []RotationCount{{"db", "failure", 1}, {"db", "success", 1}}; !slices.Equal(st.Rotations, want) {
		t.Errorf("Stats().Rotations = %+v, want %+v", st.Rotations, want)
	}
	if len(st.Secrets) != 1 || st.Secrets[0].Name != "db" || st.Secrets[0].LastRotated.IsZero() || st.Secrets[0].CurrentCreated.Before(st.Secrets[0].LastRotated.Add(-time.Minute)) {
		t.Errorf("Stats().Secrets = %+v, want db with its new current version", st.Secrets)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), `"v0"`) || strings.Contains(string(b), "rotated-") {
		t.Errorf("Stats carries a secret value: %s", b)
	}
}

func TestDueForRotation(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		now      time.Time
		interval time.Duration
		want     bool
	}{
		{t0, time.Hour, false},
		{t0.Add(59 * time.Minute), time.Hour, false},
		{t0.Add(time.Hour), time.Hour, true},
		{t0.Add(100 * time.Hour), 0, false},
	}
	for _, tt := range tests {
		if got := DueForRotation(tt.now, t0, tt.interval); got != tt.want {
			t.Errorf("DueForRotation(%s, %s) = %v, want %v", tt.now.Sub(t0), tt.interval, got, tt.want)
		}
	}
}

func TestScheduler(t *testing.T) {
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	s := openTestStore(t, t.TempDir(), clk, nil)
	for _, n := range []string{"db", "other"} {
		_, err := s.CreateSecret(CreateSecretInput{Name: n, SecretString: aws.String("v0")})
		must(t, err)
	}
	d := NewDriver(s)
	rot := newFakeRotator("v0")
	d.Register("db", rot)
	sch := NewScheduler(SchedulerConfig{Driver: d, Every: map[string]time.Duration{"db": time.Hour, "other": time.Hour}, CheckInterval: time.Minute, Clock: clk})
	must(t, sch.Validate())
	ctx := context.Background()

	if got, err := sch.RunOnce(ctx); err != nil || len(got) != 0 {
		t.Fatalf("RunOnce before due = %v, %v", got, err)
	}
	clk.Advance(time.Hour)
	got, err := sch.RunOnce(ctx)
	if err != nil || !slices.Equal(got, []string{"db"}) { // "other" has no rotator
		t.Fatalf("RunOnce when due = %v, %v", got, err)
	}
	if got, _ := sch.RunOnce(ctx); len(got) != 0 {
		t.Errorf("rotated again right after rotating: %v", got)
	}
	// A failing rotation is retried at the next check, not skipped until next interval.
	clk.Advance(time.Hour)
	rot.setFail("testSecret")
	if _, err := sch.RunOnce(ctx); err == nil {
		t.Fatal("failing rotation reported no error")
	}
	rot.setFail("")
	if got, err := sch.RunOnce(ctx); err != nil || !slices.Equal(got, []string{"db"}) {
		t.Errorf("retry = %v, %v", got, err)
	}

	// The loop runs on the injected clock.
	must(t, sch.Start(ctx))
	t.Cleanup(func() { _ = sch.Stop(context.Background()) })
	before := len(rot.Calls())
	deadline := time.Now().Add(5 * time.Second)
	for len(rot.Calls()) == before && time.Now().Before(deadline) {
		clk.Advance(30 * time.Minute)
		time.Sleep(5 * time.Millisecond)
	}
	if len(rot.Calls()) == before {
		t.Error("scheduler loop never rotated")
	}
	must(t, sch.Stop(ctx))
}

var smtypesRules = func() smtypes.RotationRulesType {
	return smtypes.RotationRulesType{AutomaticallyAfterDays: aws.Int64(7)}
}()
