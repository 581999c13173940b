// Package imds serves an IMDSv2-compatible instance metadata endpoint for one instance.
package imds

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// CredentialIssuer issues role credentials bound to an instance; *iam.Issuer implements it.
type CredentialIssuer interface {
	Issue(role, instanceID string) (iam.Credentials, error)
}

// Instance is the identity the endpoint serves.
type Instance struct {
	// ID is the instance id, e.g. "i-0abc...". Required.
	ID string
	// AvailabilityZone is the zone, e.g. "eu-west-1a". Required.
	AvailabilityZone string
	// Region is the region, e.g. "eu-west-1". Default: the zone without its last letter.
	Region string
	// Role is the role of the instance profile; empty means no credentials are served.
	Role string
	// AccountID is the account id. Default "000000000000".
	AccountID string
	// PrivateIP is the instance's address, served as local-ipv4. Optional.
	PrivateIP string
	// ImageID is served as ami-id. Default "ami-00000000000000000".
	ImageID string
	// InstanceType is served as instance-type. Default "t4g.small".
	InstanceType string
	// LaunchTime is served in the identity document. Default: when the server was built.
	LaunchTime time.Time
}

// MaxTokenTTL is the largest token lifetime a client may ask for (6 hours), as on EC2.
const MaxTokenTTL = 21600

// maxTokens caps the number of live tokens so that a PUT flood cannot exhaust memory.
const maxTokens = 4096

// Config configures a Server.
type Config struct {
	// Instance is the instance served. Required.
	Instance Instance
	// Issuer issues the role credentials. Required when Instance.Role is set.
	Issuer CredentialIssuer
	// Listener is where the server listens (the instance's own address). If nil, Addr is used.
	Listener net.Listener
	// Addr is the listen address when Listener is nil, e.g. "169.254.169.254:80" or
	// "127.0.0.1:0". Default "127.0.0.1:0".
	Addr string
	// Clock is the time source. Default the wall clock.
	Clock clock.Clock
	// Logger receives request-level events (never credentials). Default slog.Default().
	Logger *slog.Logger
}

// Server is the metadata endpoint of one instance.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	tokens map[string]time.Time // token → expiry
	creds  *iam.Credentials

	ln  net.Listener
	srv *http.Server
}

// New builds a Server; call Validate and Start to serve.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	in := &cfg.Instance
	if in.Region == "" && len(in.AvailabilityZone) > 1 {
		in.Region = in.AvailabilityZone[:len(in.AvailabilityZone)-1]
	}
	if in.AccountID == "" {
		in.AccountID = "000000000000"
	}
	if in.ImageID == "" {
		in.ImageID = "ami-00000000000000000"
	}
	if in.InstanceType == "" {
		in.InstanceType = "t4g.small"
	}
	if in.LaunchTime.IsZero() {
		in.LaunchTime = cfg.Clock.Now().UTC().Truncate(time.Second)
	}
	return &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "imds", "instance", cfg.Instance.ID),
		tokens: map[string]time.Time{},
	}
}

// Validate checks the configuration.
func (s *Server) Validate() error {
	in := s.cfg.Instance
	switch {
	case in.ID == "":
		return errors.New("imds.instance.id: required")
	case in.AvailabilityZone == "":
		return errors.New("imds.instance.availability_zone: required")
	case in.Role != "" && s.cfg.Issuer == nil:
		return errors.New("imds.issuer: required when the instance has a role")
	case strings.ContainsAny(in.Role, "/\n"):
		return fmt.Errorf("imds.instance.role: must not contain '/' or newlines, got %q", in.Role)
	}
	return nil
}

// Start listens and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen imds %s: %w", s.cfg.Addr, err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("metadata endpoint started", "addr", ln.Addr().String())
	return nil
}

// Stop shuts the server down.
func (s *Server) Stop(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop imds: %w", err)
	}
	return nil
}

// Addr is the address the server listens on (after Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Endpoint is the URL to put in AWS_EC2_METADATA_SERVICE_ENDPOINT (after Start).
func (s *Server) Endpoint() string { return "http://" + s.Addr() }

// Handler returns the HTTP handler of the endpoint.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

const (
	hdrTTL   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	hdrToken = "X-Aws-Ec2-Metadata-Token"
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", "EC2ws")
	switch r.Method {
	case http.MethodPut:
		s.putToken(w, r)
	case http.MethodGet, http.MethodHead:
		if !s.validToken(r.Header.Values(hdrToken)) {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		s.get(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) putToken(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/latest/api/token" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	if _, ok := r.Header["X-Forwarded-For"]; ok {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	vals := r.Header.Values(hdrTTL)
	if len(vals) != 1 {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	ttl, ok := parseTTL(vals[0])
	if !ok {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	if len(s.tokens) >= maxTokens {
		for k, exp := range s.tokens {
			if !now.Before(exp) {
				delete(s.tokens, k)
			}
		}
	}
	if len(s.tokens) >= maxTokens {
		s.mu.Unlock()
		http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
		return
	}
	s.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
	s.mu.Unlock()
	w.Header().Set(hdrTTL, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(tok))
}

// parseTTL accepts only plain decimal digits in 1..MaxTokenTTL.
func parseTTL(v string) (int, bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxTokenTTL {
		return 0, false
	}
	return n, true
}

func (s *Server) validToken(vals []string) bool {
	if len(vals) != 1 || vals[0] == "" {
		return false
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[vals[0]]
	if !ok {
		return false
	}
	if !now.Before(exp) {
		delete(s.tokens, vals[0])
		return false
	}
	return true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	in := s.cfg.Instance
	p := r.URL.Path
	text := func(body string) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(body))
	}
	jsonBody := func(v any) {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(b)
	}
	switch p {
	case "/latest", "/latest/":
		text("dynamic\nmeta-data")
	case "/latest/meta-data", "/latest/meta-data/":
		items := []string{"ami-id", "instance-id", "instance-type", "placement/"}
		if in.PrivateIP != "" {
			items = append(items, "local-ipv4")
		}
		if in.Role != "" {
			items = append(items, "iam/")
		}
		text(strings.Join(items, "\n"))
	case "/latest/meta-data/ami-id":
		text(in.ImageID)
	case "/latest/meta-data/instance-id":
		text(in.ID)
	case "/latest/meta-data/instance-type":
		text(in.InstanceType)
	case "/latest/meta-data/local-ipv4":
		if in.PrivateIP == "" {
			notFound(w)
			return
		}
		text(in.PrivateIP)
	case "/latest/meta-data/placement", "/latest/meta-data/placement/":
		text("availability-zone\nregion")
	case "/latest/meta-data/placement/availability-zone":
		text(in.AvailabilityZone)
	case "/latest/meta-data/placement/region":
		text(in.Region)
	case "/latest/dynamic", "/latest/dynamic/":
		text("instance-identity/")
	case "/latest/dynamic/instance-identity", "/latest/dynamic/instance-identity/":
		text("document")
	case "/latest/dynamic/instance-identity/document":
		doc := map[string]any{
			"accountId":        in.AccountID,
			"architecture":     "arm64",
			"availabilityZone": in.AvailabilityZone,
			"imageId":          in.ImageID,
			"instanceId":       in.ID,
			"instanceType":     in.InstanceType,
			"pendingTime":      in.LaunchTime.UTC().Format(time.RFC3339),
			"privateIp":        in.PrivateIP,
			"region":           in.Region,
			"version":          "2017-09-30",
		}
		jsonBody(doc)
	case "/latest/meta-data/iam", "/latest/meta-data/iam/":
		if in.Role == "" {
			notFound(w)
			return
		}
		text("info\nsecurity-credentials/")
	case "/latest/meta-data/iam/info":
		if in.Role == "" {
			notFound(w)
			return
		}
		c, err := s.currentCredentials()
		if err != nil {
			s.credError(w, err)
			return
		}
		jsonBody(map[string]string{
			"Code":               "Success",
			"LastUpdated":        c.Issued.UTC().Format(time.RFC3339),
			"InstanceProfileArn": fmt.Sprintf("arn:aws:iam::%s:instance-profile/%s", in.AccountID, in.Role),
			"InstanceProfileId":  profileID(in.ID),
		})
	case "/latest/meta-data/iam/security-credentials", "/latest/meta-data/iam/security-credentials/":
		if in.Role == "" {
			notFound(w)
			return
		}
		text(in.Role)
	default:
		role, ok := strings.CutPrefix(p, "/latest/meta-data/iam/security-credentials/")
		if !ok || in.Role == "" || role != in.Role {
			notFound(w)
			return
		}
		c, err := s.currentCredentials()
		if err != nil {
			s.credError(w, err)
			return
		}
		jsonBody(map[string]string{
			"Code":            "Success",
			"LastUpdated":     c.Issued.UTC().Format(time.RFC3339),
			"Type":            "AWS-HMAC",
			"AccessKeyId":     c.AccessKeyID,
			"SecretAccessKey": c.SecretAccessKey,
			"Token":           c.SessionToken,
			"Expiration":      c.Expiration.UTC().Format(time.RFC3339),
		})
	}
}

// profileID derives a stable instance-profile id from the instance id.
func profileID(instanceID string) string {
	id := strings.ToUpper(strings.ReplaceAll(instanceID, "-", ""))
	return "AIPA" + id[:min(16, len(id))]
}

func notFound(w http.ResponseWriter) { http.Error(w, "Not Found", http.StatusNotFound) }

func (s *Server) credError(w http.ResponseWriter, err error) {
	s.log.Error("issue credentials", "err", err)
	http.Error(w, "Internal Server Error", http.StatusInternalServerError)
}

// refreshWindow caps how long before expiry credentials are replaced.
const refreshWindow = 15 * time.Minute

// NeedsRefresh reports whether credentials issued at issued and expiring at expires
// must be replaced at now: when less than a third of their lifetime is left, but
// never earlier than 15 minutes before expiry (so 1h credentials are replaced with
// 15 minutes left, 30s credentials with 10s left).
func NeedsRefresh(now, issued, expires time.Time) bool {
	return expires.Sub(now) < min(expires.Sub(issued)/3, refreshWindow)
}

func (s *Server) currentCredentials() (iam.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now()
	if s.creds != nil && !NeedsRefresh(now, s.creds.Issued, s.creds.Expiration) {
		return *s.creds, nil
	}
	c, err := s.cfg.Issuer.Issue(s.cfg.Instance.Role, s.cfg.Instance.ID)
	if err != nil {
		return iam.Credentials{}, fmt.Errorf("issue credentials for %s: %w", s.cfg.Instance.ID, err)
	}
	if c.Principal.InstanceID != s.cfg.Instance.ID || c.Principal.Role != s.cfg.Instance.Role {
		return iam.Credentials{}, fmt.Errorf("issue credentials for %s: issuer bound them to %s/%s", s.cfg.Instance.ID, c.Principal.Role, c.Principal.InstanceID)
	}
	s.creds = &c
	s.log.Info("credentials refreshed", "access_key_id", c.AccessKeyID, "expiration", c.Expiration)
	return c, nil
}

// Compile-time guard: *iam.Issuer issues the credentials served here.
var _ CredentialIssuer = (*iam.Issuer)(nil)
