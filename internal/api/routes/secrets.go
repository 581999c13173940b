package routes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/secrets"
)

// Secrets is what the secrets routes need of the identity and secrets tier.
type Secrets interface {
	// Info is the tier's settings for GET /v1/secrets.
	Info() api.SecretsInfo
	// IssueOperator issues operator credentials (*iam.Issuer).
	IssueOperator(ttl time.Duration) (iam.Credentials, error)
	// TestLogin logs in to the database with one version of a database
	// secret (*dbsecret.Credential).
	TestLogin(ctx context.Context, in secrets.GetSecretValueInput) (versionID, user string, loggedIn bool, reason string, err error)
}

// SecretsTier gives the routes the tier, nil before it runs.
type SecretsTier func() Secrets

// SecretsRoutes adds the secrets routes. The socket is 0600: every route
// here is operator-only.
func SecretsRoutes(mux *http.ServeMux, tier SecretsTier) {
	up := func(w http.ResponseWriter) Secrets {
		s := tier()
		if s == nil {
			replyErr(w, 0, unavailable("the secrets service is not running yet"))
		}
		return s
	}
	mux.HandleFunc("GET /v1/secrets", func(w http.ResponseWriter, _ *http.Request) {
		if s := up(w); s != nil {
			reply(w, http.StatusOK, s.Info())
		}
	})
	mux.HandleFunc("POST /v1/secrets/operator-credentials", func(w http.ResponseWriter, req *http.Request) {
		var in api.OperatorCredentialsRequest
		if !decode(w, req, &in) {
			return
		}
		s := up(w)
		if s == nil {
			return
		}
		ttl := time.Duration(in.TTLSeconds) * time.Second
		if ttl == 0 {
			ttl = 15 * time.Minute
		}
		if ttl < time.Second || ttl > 12*time.Hour {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("ttl_seconds: must be 1-43200, got %d", in.TTLSeconds))
			return
		}
		c, err := s.IssueOperator(ttl)
		if err != nil {
			replyErr(w, http.StatusInternalServerError, err)
			return
		}
		info := s.Info()
		w.Header().Set("Cache-Control", "no-store")
		reply(w, http.StatusOK, api.OperatorCredentials{
			AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
			Expiration: c.Expiration, Endpoint: info.Endpoint, Region: info.Region,
		})
	})
	mux.HandleFunc("POST /v1/secrets/test-login", func(w http.ResponseWriter, req *http.Request) {
		var in api.TestLoginRequest
		if !decode(w, req, &in) {
			return
		}
		s := up(w)
		if s == nil {
			return
		}
		vid, user, ok, reason, err := s.TestLogin(req.Context(), secrets.GetSecretValueInput{SecretId: in.SecretID, VersionId: in.VersionID, VersionStage: in.VersionStage})
		var ae *secrets.APIError
		switch {
		case errors.As(err, &ae):
			replyErr(w, http.StatusNotFound, err)
			return
		case err != nil && vid != "":
			replyErr(w, http.StatusBadRequest, err)
			return
		case err != nil:
			replyErr(w, http.StatusBadGateway, err)
			return
		}
		reply(w, http.StatusOK, api.TestLoginResult{VersionID: vid, Username: user, LoggedIn: ok, Reason: reason})
	})
	mux.HandleFunc("GET /v1/secrets/audit", func(w http.ResponseWriter, req *http.Request) {
		s := up(w)
		if s == nil {
			return
		}
		q, err := api.ParseAuditQuery(req.URL.Query())
		if err != nil {
			replyErr(w, http.StatusBadRequest, err)
			return
		}
		recs, err := secrets.ReadAuditFile(s.Info().AuditLog, secrets.AuditFilter{Since: q.Since, Action: q.Action, Principal: q.Principal, SecretARN: q.Secret, FailedOnly: q.Failed})
		if err != nil {
			replyErr(w, http.StatusInternalServerError, fmt.Errorf("read audit trail: %w", err))
			return
		}
		out := make([]api.AuditRecord, 0, len(recs))
		for _, r := range recs {
			out = append(out, api.AuditRecord(r))
		}
		reply(w, http.StatusOK, out)
	})
}
