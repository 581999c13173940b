package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// StepInput is what each rotation step sees. Values are plaintext in memory only.
type StepInput struct {
	// ARN and Name identify the secret.
	ARN, Name string
	// Token is the version id of the new (AWSPENDING) version.
	Token string
	// CurrentVersionID and Current are the AWSCURRENT version and its value.
	CurrentVersionID, Current string
	// Pending is the AWSPENDING value (empty during CreateSecret).
	Pending string
	// Previous is the AWSPREVIOUS value, if any (the alternate user's last password
	// in alternating-users rotation).
	Previous string
}

// Rotator implements the four rotation steps for one kind of secret (for example a
// PostgreSQL user). Each step must be idempotent: a step may be re-run after a crash.
type Rotator interface {
	// CreateSecret returns the new secret value; the driver stores it as a new version
	// labelled AWSPENDING.
	CreateSecret(ctx context.Context, in StepInput) (string, error)
	// SetSecret makes the pending value effective in the resource (e.g. ALTER ROLE).
	SetSecret(ctx context.Context, in StepInput) error
	// TestSecret checks the pending value works (e.g. logs in with it).
	TestSecret(ctx context.Context, in StepInput) error
	// FinishSecret runs just before the driver moves AWSCURRENT to the pending version
	// (and AWSPREVIOUS to the old one); most rotators do nothing here.
	FinishSecret(ctx context.Context, in StepInput) error
}

// ErrRotationInProgress is returned when the same secret is already being rotated.
var ErrRotationInProgress = errors.New("a rotation of this secret is already running")

// ErrNoRotator is returned when no Rotator is registered for a secret.
var ErrNoRotator = errors.New("no rotator is configured for this secret")

// StepError says which rotation step failed. AWSCURRENT is untouched; retry Rotate.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return "rotation step " + e.Step + ": " + e.Err.Error() }

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }

// Driver runs rotations against a Store. It is safe for concurrent use.
type Driver struct {
	store *Store
	log   *slog.Logger

	mu       sync.Mutex
	rotators map[string]Rotator // by secret name
	running  map[string]bool

	rotations counter[rotationKey] // finished rotations, for Server.Stats
}

// NewDriver returns a rotation driver for store.
func NewDriver(store *Store) *Driver {
	return &Driver{store: store, log: store.log.With("subsystem", "rotation"), rotators: map[string]Rotator{}, running: map[string]bool{}}
}

// Register sets the Rotator of a secret (by name).
func (d *Driver) Register(name string, r Rotator) {
	d.mu.Lock()
	d.rotators[name] = r
	d.mu.Unlock()
}

func (d *Driver) rotator(name string) Rotator {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rotators[name]
}

// HasRotator reports whether a Rotator is registered for the secret name.
func (d *Driver) HasRotator(name string) bool { return d.rotator(name) != nil }

// Rotate runs the four steps for a secret and returns the new current version id.
// If a previous run left an AWSPENDING version (a crash, a failed step), Rotate
// resumes with it instead of creating another. If any step fails, AWSCURRENT is
// left where it was and the error (a *StepError) says which step to retry;
// Cancel abandons the pending version instead.
func (d *Driver) Rotate(ctx context.Context, secretID string) (string, error) {
	return d.rotate(ctx, secretID, "")
}

func (d *Driver) rotate(ctx context.Context, secretID, token string) (vid string, err error) {
	arn, name, err := d.store.Resolve(secretID)
	if err != nil {
		return "", err
	}
	defer func() { d.countRotation(name, err) }()
	rot := d.rotator(name)
	if rot == nil {
		return "", fmt.Errorf("rotate %s: %w", name, ErrNoRotator)
	}
	d.mu.Lock()
	if d.running[name] {
		d.mu.Unlock()
		return "", fmt.Errorf("rotate %s: %w", name, ErrRotationInProgress)
	}
	d.running[name] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.running, name)
		d.mu.Unlock()
	}()

	in, err := d.store.rotationInput(arn)
	if err != nil {
		return "", fmt.Errorf("rotate %s: %w", name, err)
	}
	log := d.log.With("arn", arn)
	if in.Token == "" {
		if token == "" {
			if token, err = newUUID(); err != nil {
				return "", fmt.Errorf("rotate %s: %w", name, err)
			}
		}
		val, err := rot.CreateSecret(ctx, in)
		if err != nil {
			return "", fmt.Errorf("rotate %s: %w", name, &StepError{Step: "createSecret", Err: err})
		}
		if _, err := d.store.PutSecretValue(PutSecretValueInput{SecretId: arn, ClientRequestToken: token, SecretString: &val, VersionStages: []string{StagePending}}); err != nil {
			return "", fmt.Errorf("rotate %s: %w", name, &StepError{Step: "createSecret", Err: err})
		}
		in.Token, in.Pending = token, val
		log.Info("rotation step done", "step", "createSecret", "version", token)
	} else {
		log.Info("resuming rotation", "version", in.Token)
	}
	for _, step := range []struct {
		name string
		fn   func(context.Context, StepInput) error
	}{{"setSecret", rot.SetSecret}, {"testSecret", rot.TestSecret}, {"finishSecret", rot.FinishSecret}} {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("rotate %s: %w", name, &StepError{Step: step.name, Err: err})
		}
		if err := step.fn(ctx, in); err != nil {
			log.Warn("rotation step failed", "step", step.name, "version", in.Token, "err", err)
			return "", fmt.Errorf("rotate %s: %w", name, &StepError{Step: step.name, Err: err})
		}
		log.Info("rotation step done", "step", step.name, "version", in.Token)
	}
	if err := d.store.finishRotation(arn, in.Token); err != nil {
		return "", fmt.Errorf("rotate %s: %w", name, &StepError{Step: "finishSecret", Err: err})
	}
	log.Info("rotation finished", "version", in.Token)
	return in.Token, nil
}

// Cancel abandons an unfinished rotation: AWSPENDING is removed from the pending
// version (AWS's CancelRotateSecret). It reports whether there was one.
func (d *Driver) Cancel(ctx context.Context, secretID string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return d.store.cancelRotation(secretID)
}

// rotationInput gathers the values a rotation needs. Token is set when an unfinished
// rotation left a pending version. A stale AWSPENDING on the current version (a run
// that finished but was not cleaned up) is removed.
func (s *Store) rotationInput(arn string) (StepInput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, arn)
	if err != nil {
		return StepInput{}, err
	}
	cur := sec.staged(StageCurrent)
	if cur == nil {
		return StepInput{}, apiErr(CodeInvalidRequest, "The secret has no AWSCURRENT version to rotate.")
	}
	if cur.Sealed.Binary {
		return StepInput{}, apiErr(CodeInvalidRequest, "Only SecretString values can be rotated.")
	}
	value := func(v *version) (string, error) {
		if v == nil {
			return "", nil
		}
		b, err := open(s.root, sec.ARN, v.ID, v.Sealed)
		if err != nil {
			return "", apiErr(CodeDecryptionFailure, "decrypt version %s: %v", v.ID, err)
		}
		return string(b), nil
	}
	in := StepInput{ARN: sec.ARN, Name: sec.Name, CurrentVersionID: cur.ID}
	if in.Current, err = value(cur); err != nil {
		return StepInput{}, err
	}
	if in.Previous, err = value(sec.staged(StagePrevious)); err != nil {
		return StepInput{}, err
	}
	pend := sec.staged(StagePending)
	if pend == cur {
		name := sec.Name
		if err := s.update(func(st *state) error {
			v := st.Secrets[name].staged(StageCurrent)
			v.Stages = slices.DeleteFunc(v.Stages, func(l string) bool { return l == StagePending })
			return nil
		}); err != nil {
			return StepInput{}, err
		}
		pend = nil
	}
	if pend != nil {
		in.Token = pend.ID
		if in.Pending, err = value(pend); err != nil {
			return StepInput{}, err
		}
	}
	return in, nil
}

// finishRotation moves AWSCURRENT to vid (AWSPREVIOUS to the old current) and removes
// AWSPENDING, in one atomic state write.
func (s *Store) finishRotation(arn, vid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, arn)
	if err != nil {
		return err
	}
	if sec.version(vid) == nil {
		return apiErr(CodeResourceNotFound, "Secrets Manager can't find the specified secret version: %s", vid)
	}
	name := sec.Name
	now := s.cfg.Clock.Now().UTC()
	return s.update(func(st *state) error {
		ns := st.Secrets[name]
		attachLabel(ns, StageCurrent, vid)
		for _, v := range ns.Versions {
			v.Stages = slices.DeleteFunc(v.Stages, func(l string) bool { return l == StagePending })
		}
		ns.LastRotated = now
		ns.LastChanged = now
		prune(ns)
		return nil
	})
}

func (s *Store) cancelRotation(secretID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, secretID)
	if err != nil {
		return false, err
	}
	if sec.staged(StagePending) == nil {
		return false, nil
	}
	name := sec.Name
	return true, s.update(func(st *state) error {
		for _, v := range st.Secrets[name].Versions {
			v.Stages = slices.DeleteFunc(v.Stages, func(l string) bool { return l == StagePending })
		}
		return nil
	})
}

// configureRotation records rotation settings (RotateSecret's RotationRules).
func (s *Store) configureRotation(secretID, lambdaARN string, rules *RotationRules) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := find(s.st, secretID)
	if err != nil {
		return err
	}
	name := sec.Name
	return s.update(func(st *state) error {
		ns := st.Secrets[name]
		ns.RotationEnabled = true
		if lambdaARN != "" {
			ns.RotationLambdaARN = lambdaARN
		}
		if rules != nil {
			ns.RotationRules = rules
		}
		return nil
	})
}

// rotationTimes returns, for each secret, when it was last rotated (or created) and
// its configured interval (0 when automatic rotation is off).
func (s *Store) rotationTimes() map[string]struct {
	last     time.Time
	interval time.Duration
} {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]struct {
		last     time.Time
		interval time.Duration
	}{}
	for name, sec := range s.st.Secrets {
		last := sec.LastRotated
		if last.IsZero() {
			last = sec.Created
		}
		var iv time.Duration
		if sec.RotationEnabled {
			iv = RotationInterval(sec.RotationRules)
		}
		out[name] = struct {
			last     time.Time
			interval time.Duration
		}{last, iv}
	}
	return out
}

// DueForRotation reports whether a secret last rotated (or created) at last must be
// rotated at now with the given interval. A zero interval never rotates.
func DueForRotation(now, last time.Time, interval time.Duration) bool {
	return interval > 0 && !now.Before(last.Add(interval))
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Driver runs the rotations. Required.
	Driver *Driver
	// Every overrides the rotation interval per secret name (e.g. from haven.yaml's
	// secrets.<name>.rotation). Secrets not listed use their RotationRules, if any.
	Every map[string]time.Duration
	// CheckInterval is how often due secrets are looked for; a failed rotation is
	// retried at the next check. Default 1m.
	CheckInterval time.Duration
	// Clock is the time source. Default the store's clock.
	Clock clock.Clock
}

// Scheduler rotates secrets when they are due.
type Scheduler struct {
	cfg  SchedulerConfig
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
}

// NewScheduler returns a Scheduler; call Validate and Start.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = time.Minute
	}
	if cfg.Clock == nil && cfg.Driver != nil {
		cfg.Clock = cfg.Driver.store.cfg.Clock
	}
	s := &Scheduler{cfg: cfg}
	if cfg.Driver != nil {
		s.log = cfg.Driver.log.With("subsystem", "rotation-scheduler")
	}
	return s
}

// Validate checks the configuration.
func (s *Scheduler) Validate() error {
	if s.cfg.Driver == nil {
		return errors.New("scheduler.driver: required")
	}
	if s.cfg.CheckInterval < 0 {
		return fmt.Errorf("scheduler.check_interval: must be > 0, got %s", s.cfg.CheckInterval)
	}
	for name, d := range s.cfg.Every {
		if d <= 0 {
			return fmt.Errorf("scheduler.every[%s]: must be > 0, got %s", name, d)
		}
	}
	return nil
}

// RunOnce rotates every due secret that has a Rotator and returns the names rotated.
// Errors of individual rotations are joined; the others still run.
func (s *Scheduler) RunOnce(ctx context.Context) ([]string, error) {
	now := s.cfg.Clock.Now()
	var rotated []string
	var errs []error
	times := s.cfg.Driver.store.rotationTimes()
	names := make([]string, 0, len(times))
	for name := range times {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t := times[name]
		iv := t.interval
		if e, ok := s.cfg.Every[name]; ok {
			iv = e
		}
		if !DueForRotation(now, t.last, iv) || !s.cfg.Driver.HasRotator(name) {
			continue
		}
		if _, err := s.cfg.Driver.Rotate(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		rotated = append(rotated, name)
	}
	return rotated, errors.Join(errs...)
}

// Start runs RunOnce every CheckInterval until Stop or ctx ends.
func (s *Scheduler) Start(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-s.cfg.Clock.After(s.cfg.CheckInterval):
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						s.log.Error("rotation check panicked", "panic", r)
					}
				}()
				if rotated, err := s.RunOnce(ctx); err != nil {
					s.log.Warn("scheduled rotation failed; will retry", "err", err, "rotated", rotated)
				}
			}()
		}
	}()
	return nil
}

// Stop ends the loop and waits for a running check to finish (or ctx to end).
func (s *Scheduler) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop rotation scheduler: %w", ctx.Err())
	}
}
