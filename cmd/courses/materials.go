package main

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Course materials live in S3 (S3_BUCKET, under S3_PREFIX), never in the
// database: a teacher uploads straight to the bucket with a presigned PUT,
// and students download through the edge (CloudFront) with signed URLs the
// app gives only to whoever may see the course. Without S3_BUCKET the app
// keeps the old behaviour: bytes in the materials table, served by the app.

// MaterialsConfig is where materials live and how their URLs are signed.
type MaterialsConfig struct {
	// Bucket is the S3 bucket (env S3_BUCKET). Empty: materials stay in
	// the database.
	Bucket string
	// Prefix is the key prefix of materials (env S3_PREFIX). Default
	// "materials/". The edge serves the bucket's keys at the same paths:
	// key materials/x is /materials/x.
	Prefix string
	// KeyPairID is the CloudFront key pair ID of signed URLs (env
	// CLOUDFRONT_KEY_PAIR_ID). Empty: links are not signed, and the app
	// serves materials itself.
	KeyPairID string
	// SigningKeySecretID is the Secrets Manager id of the PEM private key
	// (env CLOUDFRONT_SIGNING_KEY_SECRET_ID). Required with KeyPairID.
	SigningKeySecretID string
	// URLTTL is how long a signed URL lives (env COURSES_MATERIAL_URL_TTL).
	// A course's signature is reused until half of it has passed, so a link
	// is good for at least URLTTL/2. Default 1h.
	URLTTL time.Duration
	// MaxUpload bounds a teacher's upload (--max-upload). Default 100MiB.
	MaxUpload int64
	// UploadURLTTL is how long a presigned PUT stays valid. Default 15m.
	UploadURLTTL time.Duration
	// BrowserEndpoint is the S3 endpoint browsers upload to, when it is not
	// the one the app reaches S3 at (env COURSES_S3_BROWSER_ENDPOINT): in a
	// local region's VPC the app goes through its zone's interface
	// endpoint, browsers to the store itself. Default: the SDK's endpoint.
	BrowserEndpoint string
}

// Defaults of MaterialsConfig.
const (
	DefaultMaterialsPrefix = "materials/"
	DefaultMaterialURLTTL  = time.Hour
	DefaultMaxUpload       = 100 << 20
	DefaultUploadURLTTL    = 15 * time.Minute
)

// materialsConfigFromEnv reads the configuration from the environment the
// platform (or the AWS module) sets.
func materialsConfigFromEnv() (MaterialsConfig, error) {
	c := MaterialsConfig{Bucket: os.Getenv("S3_BUCKET"), Prefix: os.Getenv("S3_PREFIX"),
		KeyPairID: os.Getenv("CLOUDFRONT_KEY_PAIR_ID"), SigningKeySecretID: os.Getenv("CLOUDFRONT_SIGNING_KEY_SECRET_ID"),
		BrowserEndpoint: os.Getenv("COURSES_S3_BROWSER_ENDPOINT")}
	if v := os.Getenv("COURSES_MATERIAL_URL_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("COURSES_MATERIAL_URL_TTL: %w", err)
		}
		c.URLTTL = d
	}
	return c, nil
}

func (c *MaterialsConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultMaterialsPrefix
	}
	if c.URLTTL == 0 {
		c.URLTTL = DefaultMaterialURLTTL
	}
	if c.MaxUpload == 0 {
		c.MaxUpload = DefaultMaxUpload
	}
	if c.UploadURLTTL == 0 {
		c.UploadURLTTL = DefaultUploadURLTTL
	}
}

// Validate checks the configuration (after setDefaults).
func (c *MaterialsConfig) Validate() error {
	if c.Bucket == "" {
		if c.KeyPairID != "" {
			return errors.New("CLOUDFRONT_KEY_PAIR_ID is set but S3_BUCKET is not: signed URLs serve materials from the bucket; set S3_BUCKET")
		}
		return nil
	}
	if !strings.HasSuffix(c.Prefix, "/") || strings.HasPrefix(c.Prefix, "/") {
		return fmt.Errorf("S3_PREFIX: must end with / and not start with one, e.g. materials/, got %q", c.Prefix)
	}
	if (c.KeyPairID == "") != (c.SigningKeySecretID == "") {
		return errors.New("CLOUDFRONT_KEY_PAIR_ID and CLOUDFRONT_SIGNING_KEY_SECRET_ID go together: set both (signed material URLs) or neither (the app serves materials)")
	}
	if c.URLTTL < 2*time.Second || c.URLTTL > 7*24*time.Hour {
		return fmt.Errorf("COURSES_MATERIAL_URL_TTL: must be from 2s to 168h, got %s", c.URLTTL)
	}
	if c.MaxUpload < 1 || c.MaxUpload > 5<<30 {
		return fmt.Errorf("--max-upload: must be from 1 byte to 5GiB (S3's largest single PUT), got %d", c.MaxUpload)
	}
	return nil
}

// objectAPI is the part of the S3 client materials use.
type objectAPI interface {
	staticBucket
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// presigner makes presigned PUT URLs.
type presigner interface {
	PresignPutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.PresignOptions)) (*v4Request, error)
}

// v4Request is a presigned request (the SDK's v4.PresignedHTTPRequest).
type v4Request struct {
	URL    string
	Method string
	Header map[string][]string
}

// sdkPresigner adapts the SDK's PresignClient.
type sdkPresigner struct{ c *s3.PresignClient }

func (p sdkPresigner) PresignPutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.PresignOptions)) (*v4Request, error) {
	r, err := p.c.PresignPutObject(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	return &v4Request{URL: r.URL, Method: r.Method, Header: r.SignedHeader}, nil
}

// Materials is the bucket side of course materials.
type Materials struct {
	cfg     MaterialsConfig
	s3      objectAPI
	presign presigner
	signer  *materialSigner // nil: links are not signed
	// origin is the scheme and host browsers upload to, for the CSP's connect-src.
	origin string
	log    *slog.Logger
}

// NewMaterials connects to S3 with the AWS SDK's default configuration:
// the credential chain (instance metadata on an instance) and the standard
// endpoint settings (AWS_ENDPOINT_URL_S3 in a local region). It returns nil
// when no bucket is configured.
func NewMaterials(ctx context.Context, cfg MaterialsConfig, log *slog.Logger) (*Materials, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		return nil, nil
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	client := s3.NewFromConfig(awsCfg)
	browser := client
	if cfg.BrowserEndpoint != "" {
		browser = s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(cfg.BrowserEndpoint) })
	}
	m := &Materials{cfg: cfg, s3: client, presign: sdkPresigner{s3.NewPresignClient(browser)}, log: log.With("component", "materials")}
	// Where presigned URLs point, for the page's Content-Security-Policy:
	// the SDK's own endpoint rules, without credentials or network (the
	// instance's identity may not be served yet when the app starts).
	o := browser.Options()
	ep, err := o.EndpointResolverV2.ResolveEndpoint(ctx, s3.EndpointParameters{
		Bucket: aws.String(cfg.Bucket), Region: aws.String(o.Region), Endpoint: o.BaseEndpoint,
		ForcePathStyle: aws.Bool(o.UsePathStyle), UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false),
	})
	if err != nil {
		return nil, fmt.Errorf("resolve the endpoint of s3://%s: %w", cfg.Bucket, err)
	}
	m.origin = ep.URI.Scheme + "://" + ep.URI.Host
	if cfg.KeyPairID != "" {
		m.signer = newMaterialSigner(cfg, secretsmanager.NewFromConfig(awsCfg), systemClock{}, m.log)
	}
	return m, nil
}

// coursePrefix is the key prefix of one course's materials.
func (m *Materials) coursePrefix(courseID int64) string {
	return m.cfg.Prefix + "courses/" + strconv.FormatInt(courseID, 10) + "/"
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeFilename keeps a file name to letters, digits, dot, dash and
// underscore, so its key and URL need no escaping.
func safeFilename(name string) string {
	name = name[strings.LastIndexAny(name, `/\`)+1:]
	name = strings.Trim(unsafeName.ReplaceAllString(name, "-"), "-.")
	if len(name) > 100 {
		name = name[len(name)-100:]
	}
	if name == "" {
		name = "file"
	}
	return name
}

// Key is the object key of a material or an upload: the course's prefix,
// an id and the file name.
func (m *Materials) Key(courseID int64, id, filename string) string {
	return m.coursePrefix(courseID) + id + "/" + safeFilename(filename)
}

// Link is the URL path (and signed query) of an object for one user who
// may see its course: at the edge, signed for the course; without a
// signer, the app's own path, which checks the session.
func (m *Materials) Link(ctx context.Context, courseID int64, key string) (string, error) {
	p := "/" + key
	if m.signer == nil {
		return p, nil
	}
	q, err := m.signer.query(ctx, courseID, "/"+m.coursePrefix(courseID))
	if err != nil {
		return "", err
	}
	return p + "?" + q, nil
}

// PresignUpload returns a presigned PUT of exactly size bytes of
// contentType to key.
func (m *Materials) PresignUpload(ctx context.Context, key, contentType string, size int64) (*v4Request, error) {
	return m.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(m.cfg.Bucket), Key: aws.String(key), ContentType: aws.String(contentType),
		ContentLength: aws.Int64(size), CacheControl: aws.String(materialCacheControl),
	}, func(o *s3.PresignOptions) { o.Expires = m.cfg.UploadURLTTL })
}

// materialCacheControl is stored with every material: the edge keeps it a
// day and serves it for a week more if the bucket cannot be reached.
const materialCacheControl = "public, max-age=86400, stale-if-error=604800"

// Stat returns the size of an object, or errObjectMissing.
func (m *Materials) Stat(ctx context.Context, key string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	out, err := m.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(m.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		var nf interface{ ErrorCode() string }
		if errors.As(err, &nf) && (nf.ErrorCode() == "NotFound" || nf.ErrorCode() == "NoSuchKey") {
			return 0, errObjectMissing
		}
		return 0, fmt.Errorf("head s3://%s/%s: %w", m.cfg.Bucket, key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

var errObjectMissing = errors.New("the object is not in the bucket")

var errNoBucket = errors.New("S3_BUCKET is not set: the app keeps materials in the database and serves static files itself")

// bucketTimeout bounds one S3 call of a request.
const bucketTimeout = 30 * time.Second

// Open returns an object's body, size and content type.
func (m *Materials) Open(ctx context.Context, key string) (io.ReadCloser, int64, string, error) {
	out, err := m.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(m.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		var nf interface{ ErrorCode() string }
		if errors.As(err, &nf) && nf.ErrorCode() == "NoSuchKey" {
			return nil, 0, "", errObjectMissing
		}
		return nil, 0, "", fmt.Errorf("get s3://%s/%s: %w", m.cfg.Bucket, key, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), aws.ToString(out.ContentType), nil
}

// Put stores an object (the move of old materials out of the database).
func (m *Materials) Put(ctx context.Context, key, contentType string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	_, err := m.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(m.cfg.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String(contentType),
		CacheControl: aws.String(materialCacheControl)})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", m.cfg.Bucket, key, err)
	}
	return nil
}

// secretGetter is the one Secrets Manager call the signer makes.
type secretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// materialSigner signs CloudFront URLs with the AWS SDK's signer: a custom
// policy for all of one course's materials (https://*/PREFIX/courses/ID/*)
// expiring URLTTL after it is made. Its private key comes from Secrets
// Manager at first use and stays in memory only. A course's signature is
// reused until half its life has passed, so signing costs one RSA
// operation per course and half-TTL, not one per link.
type materialSigner struct {
	keyID, secretID string
	ttl             time.Duration
	sm              secretGetter
	clock           Clock
	log             *slog.Logger

	mu     sync.Mutex
	signer *sign.URLSigner
	cache  map[int64]signedPolicy
}

type signedPolicy struct {
	query   string
	renewAt time.Time
}

func newMaterialSigner(cfg MaterialsConfig, sm secretGetter, clock Clock, log *slog.Logger) *materialSigner {
	return &materialSigner{keyID: cfg.KeyPairID, secretID: cfg.SigningKeySecretID, ttl: cfg.URLTTL, sm: sm, clock: clock, log: log, cache: map[int64]signedPolicy{}}
}

// urlSigner returns the SDK signer, reading the key on first use.
func (s *materialSigner) urlSigner(ctx context.Context) (*sign.URLSigner, error) {
	if s.signer != nil {
		return s.signer, nil
	}
	out, err := s.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.secretID), VersionStage: aws.String("AWSCURRENT")})
	if err != nil {
		return nil, fmt.Errorf("get the URL signing key %s: %w", s.secretID, err)
	}
	key, err := parseSigningKey([]byte(aws.ToString(out.SecretString)))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.secretID, err)
	}
	s.signer = sign.NewURLSigner(s.keyID, key)
	s.log.Info("fetched the URL signing key", "secret_id", s.secretID, "key_pair_id", s.keyID, "version_id", aws.ToString(out.VersionId))
	return s.signer, nil
}

// parseSigningKey reads a PEM RSA private key, PKCS #8 (what openssl
// genpkey writes) or PKCS #1. The error never holds key material.
func parseSigningKey(pemKey []byte) (crypto.Signer, error) {
	if k, err := sign.LoadPEMPrivKeyPKCS8AsSigner(bytes.NewReader(pemKey)); err == nil {
		return k, nil
	}
	if k, err := sign.LoadPEMPrivKey(bytes.NewReader(pemKey)); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PEM RSA private key (PKCS #8 PRIVATE KEY or PKCS #1 RSA PRIVATE KEY)")
}

// query returns the signed-URL query (Policy, Signature, Key-Pair-Id) for
// every object under pathPrefix of course courseID.
func (s *materialSigner) query(ctx context.Context, courseID int64, pathPrefix string) (string, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[courseID]; ok && now.Before(c.renewAt) {
		return c.query, nil
	}
	signer, err := s.urlSigner(ctx)
	if err != nil {
		return "", err
	}
	resource := "https://*" + pathPrefix + "*"
	p := &sign.Policy{Statements: []sign.Statement{{Resource: resource,
		Condition: sign.Condition{DateLessThan: sign.NewAWSEpochTime(now.Add(s.ttl))}}}}
	// The SDK signs a whole URL; the links are relative (the page's own
	// host is the edge), so only the query is kept.
	signed, err := signer.SignWithPolicy("https://edge"+pathPrefix, p)
	if err != nil {
		return "", fmt.Errorf("sign material URLs of course %d: %w", courseID, err)
	}
	q := signed[strings.IndexByte(signed, '?')+1:]
	if len(s.cache) > 10000 {
		clear(s.cache)
	}
	s.cache[courseID] = signedPolicy{query: q, renewAt: now.Add(s.ttl / 2)}
	return q, nil
}
