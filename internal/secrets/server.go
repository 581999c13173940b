package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// Authorizer decides whether a principal may perform an action on a resource;
// *iam.Policies implements it.
type Authorizer interface {
	Authorize(p iam.Principal, action, resourceARN string) error
}

// Config configures a Server.
type Config struct {
	// Dir is the state directory holding secrets.json, root.key and audit.log.
	// Created with mode 0700 if absent. Required.
	Dir string
	// Region is the region in ARNs and the SigV4 scope requests must use. Required.
	Region string
	// Account is the account id in ARNs. Required (12 digits).
	Account string
	// Keys resolves access key ids of signed requests; usually the *iam.Issuer. Required.
	Keys iam.KeyLookup
	// Policies authorizes calls; usually *iam.Policies. Required.
	Policies Authorizer
	// Listener is where the API listens. If nil, Addr is used.
	Listener net.Listener
	// Addr is the listen address when Listener is nil. Default "127.0.0.1:0".
	Addr string
	// MaxSkew is the accepted request clock skew. Default 5m.
	MaxSkew time.Duration
	// MaxBody is the largest request body in bytes. Default 1 MiB.
	MaxBody int64
	// Clock is the time source. Default the wall clock.
	Clock clock.Clock
	// Failpoint injects failures in tests. Default none.
	Failpoint Failpoint
	// Audit bounds the audit log: rotation size, retention, and the window
	// over which unauthenticated failures are aggregated. Each field says
	// its default; its clock defaults to Clock.
	Audit AuditConfig
	// Logger receives events, never secret values. Default slog.Default().
	Logger *slog.Logger
}

// Server is the Secrets-Manager-compatible API: JSON 1.1 over POST /, SigV4-verified,
// authorized by policy, every call audited.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *Store
	driver   *Driver
	verifier *iam.Verifier
	audit    *AuditLog

	ln        net.Listener
	srv       *http.Server
	stopFlush chan struct{}
	flushed   chan struct{}

	calls counter[callKey] // API calls by action and result, for Stats
}

// New validates cfg and opens the store (root key, state) and the audit log.
func New(cfg Config) (*Server, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "secrets")}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	// X-Amz-Target names the operation: it must be signed, as AWS requires.
	v, err := iam.NewVerifier(iam.VerifierConfig{Keys: cfg.Keys, Service: "secretsmanager", Region: cfg.Region, MaxSkew: cfg.MaxSkew, MaxBody: cfg.MaxBody, Clock: cfg.Clock,
		SignedHeaders: []string{"x-amz-target"}})
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	s.verifier = v
	s.store, err = OpenStore(StoreConfig{Dir: cfg.Dir, Region: cfg.Region, Account: cfg.Account, Clock: cfg.Clock, Failpoint: cfg.Failpoint, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if cfg.Audit.Clock == nil {
		cfg.Audit.Clock = cfg.Clock
	}
	s.audit, err = OpenAuditLog(filepath.Join(cfg.Dir, AuditFile), cfg.Audit)
	if err != nil {
		return nil, err
	}
	s.driver = NewDriver(s.store)
	return s, nil
}

// Validate checks the configuration.
func (s *Server) Validate() error {
	c := s.cfg
	switch {
	case c.Dir == "":
		return errors.New("secrets.dir: required")
	case c.Region == "":
		return errors.New("secrets.region: required")
	case len(c.Account) != 12:
		return fmt.Errorf("secrets.account: must be 12 digits, got %q", c.Account)
	case c.Keys == nil:
		return errors.New("secrets.keys: required")
	case c.Policies == nil:
		return errors.New("secrets.policies: required")
	}
	return nil
}

// Store is the underlying store, for direct use by the daemon (seeding secrets).
func (s *Server) Store() *Store { return s.store }

// Driver is the rotation driver; register Rotators on it.
func (s *Server) Driver() *Driver { return s.driver }

// AuditPath is the path of the audit log.
func (s *Server) AuditPath() string { return filepath.Join(s.cfg.Dir, AuditFile) }

// Start listens and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("listen secrets %s: %w", s.cfg.Addr, err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	// Aggregated unauthenticated failures are written when their window
	// ends, even if no other call comes.
	s.stopFlush, s.flushed = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.flushed)
		t := time.NewTicker(max(s.audit.cfg.Window/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-s.stopFlush:
				return
			case <-t.C:
				if err := s.audit.Flush(); err != nil {
					s.log.Error("audit write failed", "err", err)
				}
			}
		}
	}()
	s.log.Info("secrets API started", "addr", ln.Addr().String())
	return nil
}

// Serve serves the API on ln too, until Stop: in a region's VPC, the
// listeners of the Secrets Manager interface endpoint, opened inside its
// namespace (vpc.Namespace.Listen), which the instances reach. Start first.
func (s *Server) Serve(ln net.Listener) error {
	if s.srv == nil {
		ln.Close()
		return errors.New("serve secrets API: not started")
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.log.Info("secrets API serving", "addr", ln.Addr().String())
	return nil
}

// Stop shuts the server down and closes the audit log.
func (s *Server) Stop(ctx context.Context) error {
	var errs []error
	if s.srv != nil {
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop secrets API: %w", err))
		}
	}
	if s.stopFlush != nil {
		close(s.stopFlush)
		<-s.flushed
		s.stopFlush = nil
	}
	if err := s.audit.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Endpoint is the URL for AWS_ENDPOINT_URL_SECRETS_MANAGER (after Start).
func (s *Server) Endpoint() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

const jsonContentType = "application/x-amz-json-1.1"

var operations = map[string]bool{
	"CreateSecret": true, "GetSecretValue": true, "DescribeSecret": true, "PutSecretValue": true,
	"UpdateSecretVersionStage": true, "RotateSecret": true, "ListSecrets": true, "ListSecretVersionIds": true,
	"CancelRotateSecret": true,
}

type call struct {
	rec    AuditRecord
	status int
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	reqID, _ := newUUID()
	now := s.cfg.Clock.Now().UTC()
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.Header().Set("Date", now.Format(http.TimeFormat))
	c := &call{rec: AuditRecord{Time: now, RequestID: reqID, UserAgent: r.UserAgent()}}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		c.rec.SourceIP = host
	}
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	if operations[op] {
		c.rec.Action = op
	} else {
		c.rec.Action = "Unknown"
	}
	out, err := s.handle(r, op, c)
	if err != nil {
		var ae *APIError
		if !errors.As(err, &ae) {
			s.log.Error("internal error", "request_id", reqID, "action", c.rec.Action, "err", err)
			ae = apiErr(CodeInternalError, "An error occurred on the server side.")
		}
		c.rec.Result = ae.Code
		s.writeJSON(w, ae.Status, map[string]string{"__type": ae.Code, "message": ae.Message}, ae.Code)
	} else {
		c.rec.Result = "Success"
		s.writeJSON(w, http.StatusOK, out, "")
	}
	s.calls.add(callKey{c.rec.Action, c.rec.Result})
	if err := s.audit.Write(c.rec); err != nil {
		s.log.Error("audit write failed", "request_id", reqID, "err", err)
	}
	s.log.Debug("api call", "request_id", reqID, "action", c.rec.Action, "principal", c.rec.Principal, "secret", c.rec.SecretARN, "result", c.rec.Result)
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any, errType string) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"__type":"InternalServiceError","message":"encode response"}`)
	}
	w.Header().Set("Content-Type", jsonContentType)
	if errType != "" {
		w.Header().Set("X-Amzn-Errortype", errType)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return apiErr(CodeSerialization, "Could not parse the request body: %v", err)
	}
	if dec.More() {
		return apiErr(CodeSerialization, "Could not parse the request body: trailing data")
	}
	return nil
}

// handle authenticates, parses, authorizes and runs one call.
func (s *Server) handle(r *http.Request, op string, c *call) (any, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, &APIError{Code: CodeMethodNotSupported, Status: http.StatusMethodNotAllowed, Message: "Only POST / is supported."}
	}
	p, body, err := s.verifier.Verify(r)
	if err != nil {
		var ae *iam.AuthError
		if errors.As(err, &ae) {
			return nil, &APIError{Code: ae.Code, Status: ae.Status, Message: ae.Message}
		}
		return nil, err
	}
	c.rec.Principal, c.rec.AccessKeyID, c.rec.Role, c.rec.Instance = p.ARN(), p.AccessKeyID, p.Role, p.InstanceID
	if !operations[op] {
		return nil, apiErr(CodeUnknownOperation, "The action or operation requested is invalid.")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, jsonContentType) {
		return nil, apiErr(CodeSerialization, "Content-Type must be %s.", jsonContentType)
	}
	authorize := func(arn string) error {
		c.rec.SecretARN = arn
		if err := s.cfg.Policies.Authorize(p, "secretsmanager:"+op, arn); err != nil {
			return apiErr(CodeAccessDenied, "%v", err)
		}
		return nil
	}
	// resource returns the ARN of SecretId for authorization: the real one when the
	// secret exists, else the ARN the id names.
	resource := func(id string) string {
		if arn, _, err := s.store.Resolve(id); err == nil {
			return arn
		}
		if strings.HasPrefix(id, "arn:") {
			return id
		}
		return s.store.PartialARN(id)
	}

	switch op {
	case "CreateSecret":
		var in CreateSecretInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if !nameRE.MatchString(in.Name) {
			return nil, apiErr(CodeInvalidParameter, "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!")
		}
		arn, err := s.store.newARN(in.Name)
		if err != nil {
			return nil, err
		}
		if err := authorize(arn); err != nil {
			return nil, err
		}
		out, err := s.store.createSecret(in, arn)
		c.rec.SecretARN, c.rec.VersionID = out.ARN, out.VersionId
		return out, err
	case "GetSecretValue":
		var in GetSecretValueInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		c.rec.VersionID = in.VersionId
		out, err := s.store.GetSecretValue(in)
		if err == nil {
			c.rec.VersionID = out.VersionId
		}
		return out, err
	case "DescribeSecret":
		var in DescribeSecretInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		return s.store.DescribeSecret(in)
	case "PutSecretValue":
		var in PutSecretValueInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		out, err := s.store.PutSecretValue(in)
		c.rec.VersionID = out.VersionId
		return out, err
	case "UpdateSecretVersionStage":
		var in UpdateSecretVersionStageInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		c.rec.VersionID = in.MoveToVersionId
		return s.store.UpdateSecretVersionStage(in)
	case "RotateSecret":
		var in RotateSecretInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		out, err := s.rotateSecret(r.Context(), in)
		c.rec.VersionID = out.VersionId
		return out, err
	case "CancelRotateSecret":
		var in DescribeSecretInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		arn, name, err := s.store.Resolve(in.SecretId)
		if err != nil {
			return nil, err
		}
		if _, err := s.driver.Cancel(r.Context(), arn); err != nil {
			return nil, err
		}
		return UpdateSecretVersionStageOutput{ARN: arn, Name: name}, nil
	case "ListSecrets":
		var in ListSecretsInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize("*"); err != nil {
			return nil, err
		}
		c.rec.SecretARN = ""
		return s.store.ListSecrets(in)
	case "ListSecretVersionIds":
		var in ListSecretVersionIdsInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		if err := authorize(resource(in.SecretId)); err != nil {
			return nil, err
		}
		return s.store.ListSecretVersionIds(in)
	}
	return nil, apiErr(CodeUnknownOperation, "The action or operation requested is invalid.")
}

// rotateSecret records the rotation settings and, unless RotateImmediately is false,
// runs the rotation now with the registered Rotator.
func (s *Server) rotateSecret(ctx context.Context, in RotateSecretInput) (RotateSecretOutput, error) {
	if err := validateToken(in.ClientRequestToken); err != nil {
		return RotateSecretOutput{}, err
	}
	if in.RotationRules != nil && in.RotationRules.AutomaticallyAfterDays != nil {
		if d := *in.RotationRules.AutomaticallyAfterDays; d < 1 || d > 1000 {
			return RotateSecretOutput{}, apiErr(CodeInvalidParameter, "AutomaticallyAfterDays must be between 1 and 1000.")
		}
	}
	arn, name, err := s.store.Resolve(in.SecretId)
	if err != nil {
		return RotateSecretOutput{}, err
	}
	out := RotateSecretOutput{ARN: arn, Name: name}
	if !s.driver.HasRotator(name) {
		return out, apiErr(CodeInvalidRequest, "No Lambda rotation function ARN is associated with this secret.")
	}
	if err := s.store.configureRotation(arn, in.RotationLambdaARN, in.RotationRules); err != nil {
		return out, err
	}
	if in.RotateImmediately != nil && !*in.RotateImmediately {
		return out, nil
	}
	vid, err := s.driver.rotate(ctx, arn, in.ClientRequestToken)
	var se *StepError
	switch {
	case errors.Is(err, ErrRotationInProgress):
		return out, apiErr(CodeInvalidRequest, "A previous rotation isn't complete. That rotation will be reattempted.")
	case errors.As(err, &se):
		s.log.Warn("rotation failed", "arn", arn, "step", se.Step, "err", se.Err)
		return out, apiErr(CodeInvalidRequest, "Rotation failed at step %s; AWSCURRENT is unchanged. Retry RotateSecret to resume, or CancelRotateSecret.", se.Step)
	case err != nil:
		return out, err
	}
	out.VersionId = vid
	return out, nil
}

// Compile-time guards: the iam types satisfy the interfaces this package consumes.
var (
	_ Authorizer    = (*iam.Policies)(nil)
	_ iam.KeyLookup = (*iam.Issuer)(nil)
)
