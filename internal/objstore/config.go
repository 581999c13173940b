package objstore

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/s3err"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/spec"
)

// Defaults applied by Config.withDefaults; each Config field documents its own.
const (
	DefaultRegion         = "us-east-1"
	DefaultAccount        = "000000000000"
	DefaultMaxUploadBytes = 5 << 30 // S3's limit for one PUT
	DefaultAbortDays      = 7
	DefaultDayLength      = 24 * time.Hour
	DefaultScanInterval   = 10 * time.Second
	DefaultPublish        = time.Second
)

// MaxObjectBytes is S3's largest object (5 TiB), the ceiling for MaxUploadBytes.
const MaxObjectBytes = 5 << 40

// File names inside Config.Dir.
const (
	ConfigFile = "config.json"  // the server's configuration (no secrets)
	DataDir    = "data"         // the posix backend's root: one directory per bucket
	SocketFile = "admin.sock"   // the control socket (credentials, status, reload), mode 0600
	PIDFile    = "objstore.pid" // the serving process's pid, present while it serves
	LockFile   = "objstore.lock"
	LogFile    = "objstore.log" // stdout and stderr of a server started by Process
)

// Config configures the object store server. It is stored as JSON in
// Dir/config.json (WriteConfig) and read by the server process (LoadConfig);
// it holds no secret. The zero value of every optional field selects the
// documented default.
type Config struct {
	// Dir is the state directory: buckets live under Dir/data, and the
	// control socket, pid file and log sit beside it. Created with mode 0700.
	// Required; not stored in the file (the server is told it by flag).
	Dir string `json:"-"`
	// Listen is the S3 endpoint's TCP address, host:port with an explicit
	// port (versitygw binds it itself, so port 0 cannot be read back).
	// Required.
	Listen string `json:"listen"`
	// Region is the region requests must be signed for. Default "us-east-1".
	Region string `json:"region,omitempty"`
	// Account is the 12-digit account id in principal and role ARNs; it must
	// equal the issuer's (iam.Issuer.Account). Default "000000000000".
	Account string `json:"account,omitempty"`
	// Buckets are created at start when missing; each one's policy replaces
	// whatever policy the bucket had. A bucket on disk but not listed is left
	// alone (its data is never deleted). Default: none.
	Buckets []Bucket `json:"buckets,omitempty"`
	// Roles maps a role name to its identity policies (IAM JSON, as in
	// internal/iam). Only listed roles may be named in bucket policies; a
	// credential of an unlisted role signs requests that no identity policy
	// allows. Default: none.
	Roles map[string][]iam.Policy `json:"roles,omitempty"`
	// MaxUploadBytes bounds the body of one PUT, one part and one POST
	// upload, and the size of a completed multipart object. Default 5 GiB,
	// S3's limit for a single PUT; at most 5 TiB.
	MaxUploadBytes int64 `json:"maxUploadBytes,omitempty"`
	// AbortIncompleteMultipartUploadDays is the lifecycle rule of every
	// bucket: a multipart upload still incomplete this many days after it was
	// initiated is aborted and its parts deleted. Default 7; -1 turns the rule
	// off.
	AbortIncompleteMultipartUploadDays int `json:"abortIncompleteMultipartUploadDays,omitempty"`
	// DayLength is how long one lifecycle day lasts; the local region
	// compresses time by setting it shorter. Default 24h.
	DayLength Duration `json:"dayLength,omitempty"`
	// SweepInterval is how often the lifecycle rule runs. Default
	// DayLength/24 (AWS evaluates lifecycle rules about once a day).
	SweepInterval Duration `json:"sweepInterval,omitempty"`
	// ScanInterval is how often object counts and bytes are recounted for
	// Status. Default 10s.
	ScanInterval Duration `json:"scanInterval,omitempty"`
	// PublishInterval is how often the status snapshot (request counters,
	// live credentials) is republished. Default 1s.
	PublishInterval Duration `json:"publishInterval,omitempty"`

	// Clock drives the lifecycle rule, credential expiry, scans and
	// publishing. Default the real clock. SigV4's request-time window is
	// checked by versitygw against the real clock.
	Clock clock.Clock `json:"-"`
	// Logger receives the server's logs, never a secret. Default slog.Default().
	Logger *slog.Logger `json:"-"`
}

// Bucket is one bucket and its policy.
type Bucket struct {
	// Name is the bucket name; it must be valid for S3 (ValidBucketName).
	// Required.
	Name string `json:"name"`
	// Policy is the bucket policy document, as for PutBucketPolicy. Its
	// principals name roles (arn:aws:iam::ACCOUNT:role/NAME), their sessions
	// or the account; "*" is refused, since public access is blocked as on
	// the AWS module. Default: no bucket policy, so only identity policies
	// grant access.
	Policy json.RawMessage `json:"policy,omitempty"`
	// CORS are the bucket's CORS rules, as for PutBucketCors, so a browser
	// page on another origin may call the bucket (a presigned PUT from
	// fetch, say; a plain form POST needs none). Default: none.
	CORS []CORSRule `json:"cors,omitempty"`
}

// CORSRule is one bucket CORS rule (S3's CORSRule).
type CORSRule struct {
	// AllowedOrigins are the origins allowed, e.g. "https://courses.example.edu"
	// or "*"; at least one. Required.
	AllowedOrigins []string `json:"allowedOrigins"`
	// AllowedMethods are among GET, HEAD, PUT, POST and DELETE; at least one.
	// Required.
	AllowedMethods []string `json:"allowedMethods"`
	// AllowedHeaders are the request headers a preflight may ask for ("*"
	// for any). Default: none.
	AllowedHeaders []string `json:"allowedHeaders,omitempty"`
	// ExposeHeaders are the response headers the page may read (e.g. ETag).
	// Default: none.
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`
	// MaxAgeSeconds is how long a browser may cache the preflight. Default:
	// not sent.
	MaxAgeSeconds int32 `json:"maxAgeSeconds,omitempty"`
}

// corsXML is the bucket's CORS configuration as PutBucketCors takes it, or
// nil when it has none. It is validated by versitygw's own rules.
func (b Bucket) corsXML() ([]byte, error) {
	if len(b.CORS) == 0 {
		return nil, nil
	}
	var cc auth.CORSConfiguration
	for _, r := range b.CORS {
		rule := auth.CORSRule{}
		for _, o := range r.AllowedOrigins {
			rule.AllowedOrigins = append(rule.AllowedOrigins, auth.CORSOrigin(o))
		}
		for _, m := range r.AllowedMethods {
			rule.AllowedMethods = append(rule.AllowedMethods, auth.CORSHTTPMethod(m))
		}
		for _, h := range r.AllowedHeaders {
			rule.AllowedHeaders = append(rule.AllowedHeaders, auth.CORSHeader(h))
		}
		for _, h := range r.ExposeHeaders {
			rule.ExposeHeaders = append(rule.ExposeHeaders, auth.CORSHeader(h))
		}
		if r.MaxAgeSeconds != 0 {
			rule.MaxAgeSeconds = &r.MaxAgeSeconds
		}
		cc.Rules = append(cc.Rules, rule)
	}
	if err := cc.Validate(); err != nil {
		return nil, s3Reason(err, "each rule needs allowedOrigins and allowedMethods (GET, HEAD, PUT, POST or DELETE) and valid header names")
	}
	out, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"CORSConfiguration"`
		auth.CORSConfiguration
	}{CORSConfiguration: cc})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// s3Reason turns a versitygw error into "description; hint".
func s3Reason(err error, hint string) error {
	why := err.Error()
	var se s3err.S3Error
	if errors.As(err, &se) {
		why = se.BaseError().Description
	}
	return fmt.Errorf("%s; %s", why, hint)
}

// Duration is a time.Duration that reads and writes JSON as "1h30m".
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string such as "24h" or "90s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"24h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// withDefaults returns c with every unset optional field at its default.
func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.Account == "" {
		c.Account = DefaultAccount
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if c.AbortIncompleteMultipartUploadDays == 0 {
		c.AbortIncompleteMultipartUploadDays = DefaultAbortDays
	}
	if c.DayLength == 0 {
		c.DayLength = Duration(DefaultDayLength)
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = c.DayLength / 24
	}
	if c.ScanInterval == 0 {
		c.ScanInterval = Duration(DefaultScanInterval)
	}
	if c.PublishInterval == 0 {
		c.PublishInterval = Duration(DefaultPublish)
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// abortAfter is how old an incomplete multipart upload may get; 0 when the
// rule is off.
func (c Config) abortAfter() time.Duration {
	if c.AbortIncompleteMultipartUploadDays < 0 {
		return 0
	}
	return time.Duration(c.AbortIncompleteMultipartUploadDays) * time.Duration(c.DayLength)
}

var roleNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

// Validate checks a configuration with its defaults applied; every error names
// the field, says why and what to do.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Dir == "" {
		add("objstore.dir: required: the state directory holding the buckets")
	}
	if err := validListen(c.Listen); err != nil {
		add("objstore.listen: %v", err)
	}
	if len(c.Account) != 12 || strings.Trim(c.Account, "0123456789") != "" {
		add("objstore.account: must be 12 digits, got %q", c.Account)
	}
	if c.MaxUploadBytes < 1 || c.MaxUploadBytes > MaxObjectBytes {
		add("objstore.maxUploadBytes: must be between 1 and %d (5 TiB, S3's largest object), got %d", int64(MaxObjectBytes), c.MaxUploadBytes)
	}
	if c.AbortIncompleteMultipartUploadDays < -1 {
		add("objstore.abortIncompleteMultipartUploadDays: must be ≥ 1, or -1 to turn the rule off, got %d", c.AbortIncompleteMultipartUploadDays)
	}
	for name, d := range map[string]Duration{"dayLength": c.DayLength, "sweepInterval": c.SweepInterval, "scanInterval": c.ScanInterval, "publishInterval": c.PublishInterval} {
		if d < Duration(time.Millisecond) {
			add("objstore.%s: must be ≥ 1ms, got %s", name, time.Duration(d))
		}
	}
	for name, policies := range c.Roles {
		if !roleNameRE.MatchString(name) {
			add("objstore.roles.%s: not a valid IAM role name (1–64 of letters, digits and +=,.@_-)", name)
		}
		for i, p := range policies {
			if err := p.Validate(); err != nil {
				add("objstore.roles.%s[%d].%v", name, i, err)
			}
		}
	}
	seen := map[string]int{}
	gw := newGatewayIAM(nil, c)
	for i, b := range c.Buckets {
		field := fmt.Sprintf("objstore.buckets[%d]", i)
		if err := ValidBucketName(b.Name); err != nil {
			add("%s.name: %v", field, err)
			continue
		}
		if j, dup := seen[b.Name]; dup {
			add("%s.name: bucket %q is already listed at buckets[%d]; list each bucket once", field, b.Name, j)
			continue
		}
		seen[b.Name] = i
		if err := validBucketPolicy(b, gw); err != nil {
			add("%s.policy: %v", field, err)
		}
		if _, err := b.corsXML(); err != nil {
			add("%s.cors: %v", field, err)
		}
	}
	return errors.Join(errs...)
}

func validListen(addr string) error {
	if addr == "" {
		return errors.New("required: the S3 endpoint's host:port")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q needs an explicit port between 1 and 65535 (versitygw binds it itself, so port 0 could not be read back)", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; give 127.0.0.1 or the address to serve on", addr)
	}
	return nil
}

// validBucketPolicy checks a bucket policy the way PutBucketPolicy would
// (versitygw's own parser, with haven's principals), and refuses public access.
func validBucketPolicy(b Bucket, gw *gatewayIAM) error {
	if len(bytes.TrimSpace(b.Policy)) == 0 || bytes.Equal(bytes.TrimSpace(b.Policy), []byte("null")) {
		return nil
	}
	if err := auth.ValidatePolicyDocument(b.Policy, b.Name, gw); err != nil {
		return s3Reason(err, "write it as for aws s3api put-bucket-policy, with resources in this bucket and principals naming roles listed under objstore.roles")
	}
	p, err := auth.ParsePolicyDocument(b.Policy)
	if err != nil {
		return err
	}
	if p.IsPublic() {
		return errors.New(`principal "*" grants public access, which is blocked (as on the AWS module); name the roles that need access`)
	}
	return nil
}

// ValidBucketName reports why name is not a valid S3 bucket name
// (general-purpose bucket rules), or nil. The spec checks bucket names with
// the same function.
func ValidBucketName(name string) error { return spec.ValidBucketName(name) }

// bucketNames returns the configured bucket names, sorted.
func (c Config) bucketNames() []string {
	out := make([]string, 0, len(c.Buckets))
	for _, b := range c.Buckets {
		out = append(out, b.Name)
	}
	slices.Sort(out)
	return out
}

// WriteConfig stores cfg as dir/config.json (atomically, mode 0600),
// creating dir with mode 0700. It validates cfg first and writes nothing if
// it is invalid.
func WriteConfig(dir string, cfg Config) error {
	cfg.Dir = dir
	if err := cfg.withDefaults().Validate(); err != nil {
		return fmt.Errorf("write object store config: %w", err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("write object store config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write object store config: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600)
}

// LoadConfig reads dir/config.json strictly (an unknown field is an error),
// applies defaults and validates.
func LoadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read object store config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decode %s: %w", path, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("decode %s: trailing data after the object", path)
	}
	c.Dir = dir
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
