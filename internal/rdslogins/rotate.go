package rdslogins

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// Rotation steps, in the order Secrets Manager calls them.
const (
	StepCreate = "createSecret"
	StepSet    = "setSecret"
	StepTest   = "testSecret"
	StepFinish = "finishSecret"
)

const (
	stageCurrent = "AWSCURRENT"
	stagePending = "AWSPENDING"
)

// Rotate runs one step of a rotation of the app secret. With alternating
// users the new password goes to the login that is not in AWSCURRENT, so
// the credential the app holds keeps working until it reads the new one.
// Every step can be retried.
func (s *Service) Rotate(ctx context.Context, ev Event) error {
	if !slices.Contains([]string{StepCreate, StepSet, StepTest, StepFinish}, ev.Step) {
		return fmt.Errorf("rotate: unknown step %q", ev.Step)
	}
	if ev.SecretID != s.cfg.AppSecretID {
		return fmt.Errorf("rotate %s: this function rotates only %s", ev.SecretID, s.cfg.AppSecretID)
	}
	if ev.ClientRequestToken == "" {
		return fmt.Errorf("rotate: %s without a ClientRequestToken", ev.Step)
	}
	desc, err := s.secrets.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &ev.SecretID})
	if err != nil {
		return fmt.Errorf("rotate: describe the app secret: %w", err)
	}
	if desc.RotationEnabled != nil && !*desc.RotationEnabled {
		return errors.New("rotate: rotation is not enabled on the app secret")
	}
	stages, known := desc.VersionIdsToStages[ev.ClientRequestToken]
	switch {
	case slices.Contains(stages, stageCurrent):
		s.log.Info("version already AWSCURRENT", "step", ev.Step)
		return nil
	case known && !slices.Contains(stages, stagePending):
		return fmt.Errorf("rotate: version %s is not AWSPENDING", ev.ClientRequestToken)
	case !known && ev.Step != StepCreate:
		return fmt.Errorf("rotate: %s for version %s, which does not exist", ev.Step, ev.ClientRequestToken)
	}
	switch ev.Step {
	case StepCreate:
		return s.createSecret(ctx, ev.ClientRequestToken)
	case StepSet:
		return s.setSecret(ctx, ev.ClientRequestToken)
	case StepTest:
		return s.testSecret(ctx, ev.ClientRequestToken)
	case StepFinish:
		return s.finishSecret(ctx, ev.ClientRequestToken, desc.VersionIdsToStages)
	}
	return fmt.Errorf("rotate: unknown step %q", ev.Step)
}

// current reads AWSCURRENT of the app secret.
func (s *Service) current(ctx context.Context) (dbSecret, error) {
	out, err := s.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &s.cfg.AppSecretID})
	if err != nil {
		return dbSecret{}, fmt.Errorf("read AWSCURRENT: %w", err)
	}
	var v dbSecret
	return v, parseSecret("AWSCURRENT of the app secret", deref(out.SecretString), &v)
}

// pending reads the AWSPENDING version token; found is false when the
// version has no value yet.
func (s *Service) pending(ctx context.Context, token string) (v dbSecret, found bool, err error) {
	stage := stagePending
	out, err := s.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &s.cfg.AppSecretID, VersionId: &token, VersionStage: &stage})
	var nf *smtypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		return dbSecret{}, false, nil
	}
	if err != nil {
		return dbSecret{}, false, fmt.Errorf("read AWSPENDING: %w", err)
	}
	if err := parseSecret("AWSPENDING of the app secret", deref(out.SecretString), &v); err != nil {
		return dbSecret{}, false, err
	}
	if !s.isLogin(v.Username) {
		// Never set or test a password for a role that is not the app's.
		return dbSecret{}, false, fmt.Errorf("AWSPENDING names user %q, not one of the app's logins %v", v.Username, s.cfg.Logins)
	}
	return v, true, nil
}

func (s *Service) createSecret(ctx context.Context, token string) error {
	cur, err := s.current(ctx)
	if err != nil {
		return fmt.Errorf("createSecret: %w", err)
	}
	if _, found, err := s.pending(ctx, token); err != nil || found {
		return err
	}
	if !s.isLogin(cur.Username) {
		return fmt.Errorf("createSecret: AWSCURRENT names user %q, not one of the app's logins %v", cur.Username, s.cfg.Logins)
	}
	next := s.newSecret(s.next(cur.Username))
	if err := s.put(ctx, next, &token, []string{stagePending}); err != nil {
		return fmt.Errorf("createSecret: %w", err)
	}
	s.log.Info("createSecret: new password for the next login", "user", next.Username)
	return nil
}

func (s *Service) setSecret(ctx context.Context, token string) error {
	p, found, err := s.pending(ctx, token)
	if err != nil {
		return fmt.Errorf("setSecret: %w", err)
	}
	if !found {
		return fmt.Errorf("setSecret: version %s has no AWSPENDING value", token)
	}
	conn, err := s.connectMaster(ctx)
	if err != nil {
		return fmt.Errorf("setSecret: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := setRolePassword(ctx, conn, p.Username, p.Password); err != nil {
		return fmt.Errorf("setSecret: %w", err)
	}
	s.log.Info("setSecret: password set", "user", p.Username)
	return nil
}

func (s *Service) testSecret(ctx context.Context, token string) error {
	p, found, err := s.pending(ctx, token)
	if err != nil {
		return fmt.Errorf("testSecret: %w", err)
	}
	if !found {
		return fmt.Errorf("testSecret: version %s has no AWSPENDING value", token)
	}
	conn, err := s.connect(ctx, p.Username, p.Password)
	if err != nil {
		return fmt.Errorf("testSecret: the pending credential does not log in: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var session, current string
	if err := conn.QueryRow(ctx, "SELECT session_user, current_user").Scan(&session, &current); err != nil {
		return fmt.Errorf("testSecret: query as %s: %w", p.Username, err)
	}
	if session != p.Username || current != s.cfg.Owner {
		return fmt.Errorf("testSecret: logged in as %s acting as %s, want %s acting as %s", session, current, p.Username, s.cfg.Owner)
	}
	s.log.Info("testSecret: the pending credential logs in", "user", p.Username)
	return nil
}

func (s *Service) finishSecret(ctx context.Context, token string, versions map[string][]string) error {
	var from *string
	for id, st := range versions {
		if slices.Contains(st, stageCurrent) {
			if id == token {
				return nil
			}
			from = &id
		}
	}
	stage := stageCurrent
	if _, err := s.secrets.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: &s.cfg.AppSecretID, VersionStage: &stage, MoveToVersionId: &token, RemoveFromVersionId: from,
	}); err != nil {
		return fmt.Errorf("finishSecret: move AWSCURRENT: %w", err)
	}
	s.log.Info("finishSecret: AWSCURRENT moved to the new version")
	return nil
}
