package drill

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
)

// RotationConfig configures the secret-rotation drill.
type RotationConfig struct {
	// Rotations is how many rotations to run. Default 3.
	Rotations int
	// Interval is the load time before, between and after rotations. Default 3s.
	Interval time.Duration
	// Rate is journey steps (HTTP requests) per second. Default 30.
	Rate int
	// Users is how many seeded students log in. Default 10.
	Users int
	// Workload is what the users do. Required. When it is a FetchCounter,
	// the drill checks the audit trail holds every secret fetch the app logged.
	Workload Workload
	// Secret is the secret to rotate. Default: the database secret.
	Secret string
	// Progress receives human-readable progress lines (may be nil).
	Progress io.Writer
}

// RotationStep is one rotation's outcome.
type RotationStep struct {
	N         int     `json:"n"`
	VersionID string  `json:"version_id,omitempty"`
	Username  string  `json:"username,omitempty"`
	MS        float64 `json:"ms"`
	Completed bool    `json:"completed"`
	Error     string  `json:"error,omitempty"`
	// NewLogsIn: the new AWSCURRENT logs in; PreviousLogsIn: AWSPREVIOUS still does.
	NewLogsIn      bool `json:"new_logs_in"`
	PreviousLogsIn bool `json:"previous_logs_in"`
	// StaleVersionID was replaced two rotations ago; StaleLogsIn must be false.
	StaleVersionID string `json:"stale_version_id,omitempty"`
	StaleLogsIn    *bool  `json:"stale_logs_in,omitempty"`
	StaleReason    string `json:"stale_reason,omitempty"`
}

// RotationReport is the drill's result.
type RotationReport struct {
	Envelope
	Summary
	DurationS float64        `json:"duration_s"`
	Rate      int            `json:"rate"`
	Users     int            `json:"users"`
	Secret    string         `json:"secret"`
	Requested int            `json:"rotations_requested"`
	Completed int            `json:"rotations_completed"`
	Steps     []RotationStep `json:"rotations"`
	// StaleRefused is true when every credential replaced two rotations ago
	// was refused by the database.
	StaleRefused bool `json:"stale_credentials_refused"`
	// AppFetches counts the secret fetches (as the workload counts them) the
	// instances and the release task logged over the region's life;
	// AuditedGets the app role's successful GetSecretValue calls in the audit
	// trail (AuditedAll with refusals and failures).
	AppFetches  int  `json:"app_fetches_logged"`
	AuditedGets int  `json:"get_secret_value_audited"`
	AuditedAll  int  `json:"get_secret_value_audited_all_results"`
	AuditOK     bool `json:"audit_holds_every_get"`
	// Timeline is the web load second by second (db-failover: absent
	// without web load).
	Timeline []load.Second `json:"timeline,omitempty"`
}

// SecretRotation drives logged-in journeys through the load balancer while it
// rotates the database secret N times, and checks what users saw, that each
// new credential logs in, that the one replaced two rotations ago does not,
// and that the audit trail holds every GetSecretValue the apps made.
func SecretRotation(ctx context.Context, c *api.Client, cfg RotationConfig) (*RotationReport, error) {
	if cfg.Rotations <= 0 {
		cfg.Rotations = 3
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 3 * time.Second
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 30
	}
	if cfg.Users <= 0 {
		cfg.Users = 10
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Phase != api.PhaseReady {
		return nil, fmt.Errorf("drill secret-rotation: region is %s, not ready; wait for `haven status` to say ready", st.Phase)
	}
	sm, info, err := OperatorSecrets(ctx, c, time.Hour)
	if err != nil {
		return nil, fmt.Errorf("drill secret-rotation: %w", err)
	}
	if cfg.Secret == "" {
		cfg.Secret = info.DBSecret
	}
	desc, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(cfg.Secret)})
	if err != nil {
		return nil, fmt.Errorf("drill secret-rotation: describe %s: %w", cfg.Secret, err)
	}
	versions := []string{currentVersion(desc.VersionIdsToStages)}
	if versions[0] == "" {
		return nil, fmt.Errorf("drill secret-rotation: %s has no AWSCURRENT version", cfg.Secret)
	}

	say("logging in %d users of the %s workload through %s", cfg.Users, workloadName(cfg.Workload), st.Endpoints.HTTPS)
	site, users, err := OpenSite(ctx, st, cfg.Users, cfg.Workload)
	if err != nil {
		return nil, fmt.Errorf("drill secret-rotation: %w", err)
	}
	defer site.Close()

	rep := &RotationReport{Envelope: startEnvelope(ctx, c, "secret-rotation"), Rate: cfg.Rate, Users: cfg.Users, Secret: cfg.Secret, Requested: cfg.Rotations, StaleRefused: true}
	windowStart := time.Now()
	rec := NewRecorder()
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { RunLoad(loadCtx, site, users, cfg.Rate, rec); close(loadDone) }()
	say("load: %d requests/s; %d rotations of %s, %s apart", cfg.Rate, cfg.Rotations, cfg.Secret, cfg.Interval)
	stop := func() {
		stopLoad()
		<-loadDone
	}
	login := func(vid string) (api.TestLoginResult, error) {
		return c.TestLogin(ctx, api.TestLoginRequest{SecretID: cfg.Secret, VersionID: vid})
	}
	for n := 1; n <= cfg.Rotations; n++ {
		if err := sleepCtx(ctx, cfg.Interval); err != nil {
			stop()
			return nil, err
		}
		step := RotationStep{N: n}
		t0 := time.Now()
		out, err := sm.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String(cfg.Secret)})
		step.MS = float64(time.Since(t0).Microseconds()) / 1000
		if err != nil {
			step.Error = err.Error()
			say("rotation %d failed: %v", n, err)
			rep.Steps = append(rep.Steps, step)
			continue
		}
		step.Completed, step.VersionID = true, aws.ToString(out.VersionId)
		rep.Completed++
		versions = append(versions, step.VersionID)
		if r, err := login(step.VersionID); err == nil {
			step.NewLogsIn, step.Username = r.LoggedIn, r.Username
		} else {
			step.Error = "test new credential: " + err.Error()
		}
		if r, err := login(versions[len(versions)-2]); err == nil {
			step.PreviousLogsIn = r.LoggedIn
		} else {
			step.Error = "test previous credential: " + err.Error()
		}
		if len(versions) >= 3 {
			step.StaleVersionID = versions[len(versions)-3]
			r, err := login(step.StaleVersionID)
			if err != nil {
				step.Error = "test stale credential: " + err.Error()
				rep.StaleRefused = false
			} else {
				in := r.LoggedIn
				step.StaleLogsIn, step.StaleReason = &in, r.Reason
				if in {
					rep.StaleRefused = false
				}
			}
		}
		say("rotation %d: %s (user %s) in %.0f ms; new logs in %v, previous %v, stale refused %v",
			n, step.VersionID, step.Username, step.MS, step.NewLogsIn, step.PreviousLogsIn, step.StaleLogsIn != nil && !*step.StaleLogsIn)
		rep.Steps = append(rep.Steps, step)
	}
	_ = sleepCtx(ctx, cfg.Interval)
	stop()
	rep.DurationS = time.Since(windowStart).Seconds()
	rep.Summary = rec.Summary()

	// The audit trail must hold every GetSecretValue the apps ever made: each
	// secret fetch an instance or the release task logged (as the workload
	// counts them) is one successful call of the app role.
	fc, counts := cfg.Workload.(FetchCounter)
	if counts {
		logs, _ := filepath.Glob(filepath.Join(c.StateDir, "logs", "instances", "*.log"))
		logs = append(logs, filepath.Join(c.StateDir, "logs", "release.log"))
		rep.AppFetches = countFetches(fc, logs)
	}
	recs, err := c.SecretsAudit(ctx, api.AuditQuery{Action: "GetSecretValue", Principal: info.AppRole})
	if err != nil {
		return nil, fmt.Errorf("drill secret-rotation: read the audit trail: %w", err)
	}
	for _, r := range recs {
		rep.AuditedAll++
		if r.Result == "Success" {
			rep.AuditedGets++
		}
	}
	rep.AuditOK = rep.AuditedGets >= rep.AppFetches

	fail := func(format string, a ...any) {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf(format, a...))
	}
	if rep.Failed > 0 {
		fail("%d of %d requests failed during rotation", rep.Failed, rep.Requests)
	}
	if rep.Completed != rep.Requested {
		fail("%d of %d rotations completed", rep.Completed, rep.Requested)
	}
	for _, s := range rep.Steps {
		if s.Completed && (!s.NewLogsIn || !s.PreviousLogsIn) {
			fail("rotation %d: new credential logs in %v, previous %v; both must", s.N, s.NewLogsIn, s.PreviousLogsIn)
		}
		if s.Error != "" && s.Completed {
			fail("rotation %d: %s", s.N, s.Error)
		}
	}
	if !rep.StaleRefused {
		fail("a credential replaced two rotations ago still logs in (or could not be tested)")
	}
	if !rep.AuditOK {
		fail("the apps logged %d secret fetches but the audit trail holds %d successful GetSecretValue calls", rep.AppFetches, rep.AuditedGets)
	}
	rep.Timeline = rec.Timeline()
	rep.finish()
	return rep, nil
}

func currentVersion(m map[string][]string) string {
	for id, st := range m {
		for _, s := range st {
			if s == "AWSCURRENT" {
				return id
			}
		}
	}
	return ""
}

// OperatorSecrets returns a Secrets Manager client signed with operator
// credentials valid for ttl, fetched from the daemon (they stay in this
// process's memory), and the region's secrets settings.
func OperatorSecrets(ctx context.Context, c *api.Client, ttl time.Duration) (*secretsmanager.Client, api.SecretsInfo, error) {
	info, err := c.SecretsInfo(ctx)
	if err != nil {
		return nil, api.SecretsInfo{}, err
	}
	oc, err := c.OperatorCredentials(ctx, ttl)
	if err != nil {
		return nil, api.SecretsInfo{}, fmt.Errorf("get operator credentials: %w", err)
	}
	sm := secretsmanager.NewFromConfig(aws.Config{
		Region:      oc.Region,
		Credentials: credentials.NewStaticCredentialsProvider(oc.AccessKeyID, oc.SecretAccessKey, oc.SessionToken),
	}, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(oc.Endpoint) })
	return sm, info, nil
}

// countFetches adds up fc's count over files (missing files count zero).
func countFetches(fc FetchCounter, files []string) int {
	n := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		n += fc.CountFetches(fh)
		fh.Close()
	}
	return n
}
