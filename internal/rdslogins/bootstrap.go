package rdslogins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// Bootstrap creates the owner and login roles and makes the app secret and
// the database agree, as `haven up` does locally:
//   - no value yet: the first login gets a new password, then the secret's
//     first version (AWSCURRENT) records it;
//   - a value: its user's password is set to it again (the database may have
//     been restored or replaced), and host, port and database name are
//     brought up to date.
//
// It returns the user in AWSCURRENT. Running it twice changes nothing.
func (s *Service) Bootstrap(ctx context.Context) (string, error) {
	conn, err := s.connectMaster(ctx)
	if err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := ensureRoles(ctx, conn, s.cfg.DBName, s.cfg.Owner, s.cfg.Logins); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}

	out, err := s.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &s.cfg.AppSecretID})
	var nf *smtypes.ResourceNotFoundException
	switch {
	case errors.As(err, &nf):
		// The secret exists (the module made it) but holds no version yet.
		sec := s.newSecret(s.cfg.Logins[0])
		if err := setRolePassword(ctx, conn, sec.Username, sec.Password); err != nil {
			return "", fmt.Errorf("bootstrap: %w", err)
		}
		if err := s.put(ctx, sec, nil, nil); err != nil {
			return "", fmt.Errorf("bootstrap: write the first value of the app secret: %w", err)
		}
		s.log.Info("created the app's logins and the secret's first value", "owner", s.cfg.Owner, "logins", s.cfg.Logins[:], "user", sec.Username)
		return sec.Username, nil
	case err != nil:
		return "", fmt.Errorf("bootstrap: read the app secret: %w", err)
	}
	var cur dbSecret
	if err := parseSecret("app secret", deref(out.SecretString), &cur); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if !s.isLogin(cur.Username) || cur.Password == "" {
		return "", fmt.Errorf("bootstrap: the app secret's AWSCURRENT names user %q, not one of the app's logins %v; put a value for one of them", cur.Username, s.cfg.Logins)
	}
	if err := setRolePassword(ctx, conn, cur.Username, cur.Password); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if cur.Host != s.cfg.Host || cur.Port != s.cfg.Port || cur.DBName != s.cfg.DBName || cur.Engine != "postgres" {
		up := s.newSecret(cur.Username)
		up.Password = cur.Password
		if err := s.put(ctx, up, nil, nil); err != nil {
			return "", fmt.Errorf("bootstrap: update the app secret's address: %w", err)
		}
	}
	s.log.Info("the app's logins exist and AWSCURRENT logs in", "owner", s.cfg.Owner, "user", cur.Username)
	return cur.Username, nil
}

// newSecret returns a value for user with a fresh password.
func (s *Service) newSecret(user string) dbSecret {
	return dbSecret{Engine: "postgres", Host: s.cfg.Host, Port: s.cfg.Port, DBName: s.cfg.DBName, Username: user, Password: s.NewPassword()}
}

// put writes v as a new version of the app secret: with token and stages
// when given (a rotation's AWSPENDING), else as AWSCURRENT.
func (s *Service) put(ctx context.Context, v dbSecret, token *string, stages []string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	str := string(b)
	_, err = s.secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: &s.cfg.AppSecretID, SecretString: &str, ClientRequestToken: token, VersionStages: stages,
	})
	return err
}
