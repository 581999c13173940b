package spec

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ObjStore is the S3-compatible object store (an S3 bucket on AWS): static
// files and course materials, read by the edge and written by the app.
type ObjStore struct {
	// Listen is the address of the S3 endpoint; instances reach it as
	// AWS_ENDPOINT_URL_S3. Default: 127.0.0.1:9000.
	Listen string `yaml:"listen" json:"listen"`
	// MaxUpload bounds one PUT, one part of a multipart upload, one POST
	// file and the object a multipart upload completes to; a larger one is
	// refused with S3's EntityTooLarge and nothing is stored. 1KiB–5TiB.
	// Default: 5GiB (S3's limit for one PUT).
	MaxUpload ByteSize `yaml:"max_upload" json:"max_upload"`
	// AbortIncompleteUploads is the lifecycle rule of every bucket: a
	// multipart upload still incomplete this long after its last part is
	// aborted and its parts deleted (S3's AbortIncompleteMultipartUpload,
	// in whole days on AWS). 0 turns the rule off. Default: 7d.
	AbortIncompleteUploads Duration `yaml:"abort_incomplete_uploads" json:"abort_incomplete_uploads"`
	// Buckets are created at start; their policies replace what the store
	// had. Default: one bucket "<name>-assets" where the edge reads static/*
	// and materials/*, the app reads and writes materials/*, and the
	// release task writes and lists static/*.
	Buckets []Bucket `yaml:"buckets" json:"buckets"`
}

// Bucket is one bucket and who may do what in it.
type Bucket struct {
	// Name must be a valid S3 bucket name (3–63 lowercase letters, digits,
	// dots and hyphens). Required.
	Name string `yaml:"name" json:"name"`
	// Access grants roles actions on keys. A grant to the edge becomes a
	// statement of the bucket policy (as CloudFront's origin access control
	// is granted on AWS); a grant to the app or the release task becomes a
	// statement of that role's identity policy, the same policy the Secrets
	// Manager API evaluates. Nothing else can read or write the bucket.
	// Default: none (nobody may use the bucket).
	Access []BucketAccess `yaml:"access" json:"access,omitempty"`
}

// BucketAccess grants one role actions on keys of a bucket.
type BucketAccess struct {
	// Role is edge (the edge's own identity, which signs its origin
	// requests), app (the instances' role) or release (the release task's
	// role: the deploy pipeline that uploads static files). Required.
	Role string `yaml:"role" json:"role"`
	// Actions are read (s3:GetObject), write (s3:PutObject and the
	// multipart upload calls), list (s3:ListBucket limited to the keys'
	// prefixes) and delete (s3:DeleteObject). The edge may only read.
	// Required.
	Actions []string `yaml:"actions" json:"actions"`
	// Keys are key patterns in the bucket, without a leading slash: "*"
	// matches any run of characters, e.g. materials/*. Required.
	Keys []string `yaml:"keys" json:"keys"`
}

// Roles that bucket access may name, and the actions they may be granted.
const (
	RoleEdge    = "edge"
	RoleApp     = "app"
	RoleRelease = "release"
)

// BucketActions are the actions a bucket grant may list.
var BucketActions = []string{"read", "write", "list", "delete"}

// Edge is the caching reverse proxy in front of the load balancer and the
// object store (CloudFront on AWS). Requests no behaviour matches go to the
// load balancer, uncached, with every viewer header but Host.
type Edge struct {
	// Listen is the address of the edge's HTTPS listener, with a
	// certificate from the region CA. Empty disables the edge locally.
	// Default: 127.0.0.1:8445.
	Listen string `yaml:"listen" json:"listen"`
	// Behaviors route path patterns to a target, matched in order, the
	// first match winning (CloudFront's ordered cache behaviors). Default:
	// /static/* and /materials/* (signed) to the first bucket.
	Behaviors []EdgeBehavior `yaml:"behaviors" json:"behaviors"`
	// KeyGroup names the trusted key group of signed behaviours. The region
	// makes its key pair, keeps the private key in the secrets service
	// (secret "<name>/cloudfront-signing-key") and gives the edge the
	// public key. Default: "<name>-materials".
	KeyGroup string `yaml:"key_group" json:"key_group"`
}

// EdgeBehavior is one cache behaviour.
type EdgeBehavior struct {
	// Path is a CloudFront path pattern: starts with /, case-sensitive, *
	// matches any run of characters and ? one character. Required.
	Path string `yaml:"path" json:"path"`
	// Target is "lb" (the load balancer) or the name of a bucket of
	// objstore.buckets, which the edge reads with its own identity
	// (origin access control). Required.
	Target string `yaml:"target" json:"target"`
	// Signed requires a CloudFront signed URL or signed cookies made with a
	// key of edge.key_group. Default: false.
	Signed bool `yaml:"signed" json:"signed,omitempty"`
	// MinTTL, DefaultTTL and MaxTTL bound how long an object stays fresh:
	// the origin's Cache-Control (s-maxage, max-age) or Expires is clamped
	// to [min, max], and default applies when it sends none. All three 0
	// caches nothing. Each one not set takes CloudFront's CachingOptimized
	// value for a bucket (1s, 24h, 365d) and CachingDisabled's (0) for the
	// load balancer; TTLs gives the values in force.
	MinTTL *Duration `yaml:"min_ttl" json:"min_ttl,omitempty"`
	// DefaultTTL: see MinTTL.
	DefaultTTL *Duration `yaml:"default_ttl" json:"default_ttl,omitempty"`
	// MaxTTL: see MinTTL.
	MaxTTL *Duration `yaml:"max_ttl" json:"max_ttl,omitempty"`
}

// TargetLB is the edge behaviour target of the load balancer.
const TargetLB = "lb"

// TTLs returns the behaviour's min, default and max TTL in force: each one
// set, else its default for the target.
func (b EdgeBehavior) TTLs() (minTTL, defaultTTL, maxTTL Duration) {
	if b.Target != TargetLB {
		minTTL, defaultTTL, maxTTL = bucketMinTTL, bucketDefaultTTL, bucketMaxTTL
	}
	for _, v := range []struct {
		set *Duration
		to  *Duration
	}{{b.MinTTL, &minTTL}, {b.DefaultTTL, &defaultTTL}, {b.MaxTTL, &maxTTL}} {
		if v.set != nil {
			*v.to = *v.set
		}
	}
	return minTTL, defaultTTL, maxTTL
}

// Caching reports whether the behaviour caches anything.
func (b EdgeBehavior) Caching() bool {
	lo, def, hi := b.TTLs()
	return lo > 0 || def > 0 || hi > 0
}

// CachingOptimized's TTLs, the defaults of a behaviour whose target is a bucket.
const (
	bucketMinTTL     = Duration(time.Second)
	bucketDefaultTTL = Duration(24 * time.Hour)
	bucketMaxTTL     = Duration(365 * 24 * time.Hour)
)

// fillStorage fills the defaults of the object store and the edge that
// depend on the region's name.
func (s *Spec) fillStorage() {
	if s.ObjStore.Buckets == nil {
		s.ObjStore.Buckets = []Bucket{{Name: s.Name + "-assets", Access: []BucketAccess{
			{Role: RoleEdge, Actions: []string{"read"}, Keys: []string{"static/*", "materials/*"}},
			{Role: RoleApp, Actions: []string{"read", "write"}, Keys: []string{"materials/*"}},
			{Role: RoleRelease, Actions: []string{"read", "write", "list"}, Keys: []string{"static/*", "materials/*"}},
		}}}
	}
	if s.Edge.Behaviors == nil && len(s.ObjStore.Buckets) > 0 {
		b := s.ObjStore.Buckets[0].Name
		s.Edge.Behaviors = []EdgeBehavior{{Path: "/static/*", Target: b}, {Path: "/materials/*", Target: b, Signed: true}}
	}
	if s.Edge.KeyGroup == "" {
		s.Edge.KeyGroup = s.Name + "-materials"
	}
}

// Bucket returns the bucket named name, if the spec lists it.
func (o *ObjStore) Bucket(name string) (Bucket, bool) {
	for _, b := range o.Buckets {
		if b.Name == name {
			return b, true
		}
	}
	return Bucket{}, false
}

// maxObjectBytes is S3's largest object (5 TiB).
const maxObjectBytes = 5 << 40

var keyPatternRE = regexp.MustCompile(`^[A-Za-z0-9!_.*'()/?-]+$`)

func (o *ObjStore) validate(ps *problems) {
	checkAddr(ps, "objstore.listen", o.Listen, false)
	if o.MaxUpload < 1<<10 || o.MaxUpload > maxObjectBytes {
		ps.add("objstore.max_upload", "must be from 1KiB to 5TiB (S3's largest object), got %s", o.MaxUpload)
	}
	if a := o.AbortIncompleteUploads.D(); a != 0 && (a < time.Second || a > 3650*24*time.Hour) {
		ps.add("objstore.abort_incomplete_uploads", "must be 0 (off) or from 1s to 3650d, got %s", o.AbortIncompleteUploads)
	}
	seen := map[string]int{}
	for i, b := range o.Buckets {
		f := fmt.Sprintf("objstore.buckets[%d]", i)
		if err := ValidBucketName(b.Name); err != nil {
			ps.add(f+".name", "%v", err)
		} else if j, dup := seen[b.Name]; dup {
			ps.add(f+".name", "bucket %q is already listed at objstore.buckets[%d]; list each bucket once", b.Name, j)
		}
		seen[b.Name] = i
		for k, a := range b.Access {
			a.validate(ps, fmt.Sprintf("%s.access[%d]", f, k))
		}
	}
}

func (a BucketAccess) validate(ps *problems, f string) {
	switch a.Role {
	case RoleEdge, RoleApp, RoleRelease:
	default:
		ps.add(f+".role", "must be edge, app or release, got %q", a.Role)
	}
	if len(a.Actions) == 0 {
		ps.add(f+".actions", "must list at least one of %s", strings.Join(BucketActions, ", "))
	}
	for i, act := range a.Actions {
		if !slices.Contains(BucketActions, act) {
			ps.add(fmt.Sprintf("%s.actions[%d]", f, i), "must be one of %s, got %q", strings.Join(BucketActions, ", "), act)
		} else if a.Role == RoleEdge && act != "read" {
			ps.add(fmt.Sprintf("%s.actions[%d]", f, i), "the edge may only read (it serves viewers; writes come from the app and the release task), got %q", act)
		}
	}
	if len(a.Keys) == 0 {
		ps.add(f+".keys", `must list at least one key pattern, e.g. "materials/*"`)
	}
	for i, k := range a.Keys {
		if strings.HasPrefix(k, "/") || !keyPatternRE.MatchString(k) || len(k) > 1024 {
			ps.add(fmt.Sprintf("%s.keys[%d]", f, i), `must be a key pattern without a leading slash, of letters, digits and !_.*'()/?-, e.g. "materials/*", got %q`, k)
		}
	}
}

var keyGroupRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// validate checks the edge; buckets are the object store's, which
// behaviours may target.
func (e *Edge) validate(ps *problems, buckets []Bucket) {
	checkAddr(ps, "edge.listen", e.Listen, true)
	var targets []string
	for _, b := range buckets {
		targets = append(targets, b.Name)
	}
	seen := map[string]int{}
	for i, b := range e.Behaviors {
		f := fmt.Sprintf("edge.behaviors[%d]", i)
		switch {
		case !strings.HasPrefix(b.Path, "/"):
			ps.add(f+".path", "must be a path pattern starting with /, e.g. /static/*, got %q", b.Path)
		case len(b.Path) > 255:
			ps.add(f+".path", "must be at most 255 characters (CloudFront's limit), got %d", len(b.Path))
		case b.Path == "/*":
			ps.add(f+".path", "/* is the default behaviour (the load balancer); list only narrower patterns")
		}
		if j, dup := seen[b.Path]; dup {
			ps.add(f+".path", "pattern %q is already edge.behaviors[%d]; the first match wins, so this one would never be used", b.Path, j)
		}
		seen[b.Path] = i
		if b.Target != TargetLB && !slices.Contains(targets, b.Target) {
			ps.add(f+".target", "unknown target %q; use lb (the load balancer) or a bucket of objstore.buckets (%s)", b.Target, strings.Join(targets, ", "))
		}
		lo, def, hi := b.TTLs()
		for _, t := range []struct {
			n string
			d Duration
		}{{"min_ttl", lo}, {"default_ttl", def}, {"max_ttl", hi}} {
			if t.d < 0 || t.d.D() > 365*24*time.Hour {
				ps.add(f+"."+t.n, "must be from 0 to 365d, got %s", t.d)
			}
		}
		if lo > hi {
			ps.add(f+".min_ttl", "must be ≤ max_ttl (%s), got %s", hi, lo)
		} else if def < lo || def > hi {
			ps.add(f+".default_ttl", "must be between min_ttl (%s) and max_ttl (%s), got %s", lo, hi, def)
		}
	}
	if !keyGroupRE.MatchString(e.KeyGroup) {
		ps.add("edge.key_group", "must be 1–128 letters, digits, underscores or hyphens, got %q", e.KeyGroup)
	}
}

// bucketNameDNS is the shape S3 requires: lowercase letters, digits, dots and
// hyphens, starting and ending with a letter or digit.
var bucketNameDNS = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)

// ValidBucketName reports why name is not a valid S3 bucket name
// (general-purpose bucket rules), or nil.
func ValidBucketName(name string) error {
	const rule = "use 3–63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
	switch {
	case len(name) < 3 || len(name) > 63:
		return fmt.Errorf("bucket name %q is %d characters long; %s", name, len(name), rule)
	case strings.ToLower(name) != name:
		return fmt.Errorf("bucket name %q has uppercase letters; %s", name, rule)
	case !bucketNameDNS.MatchString(name):
		return fmt.Errorf("bucket name %q has a character S3 does not allow or does not start and end with a letter or digit; %s", name, rule)
	case strings.Contains(name, ".."):
		return fmt.Errorf("bucket name %q has two adjacent dots; %s", name, rule)
	case net.ParseIP(name) != nil:
		return fmt.Errorf("bucket name %q is formatted as an IP address, which S3 does not allow", name)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("bucket name %q starts with the reserved prefix %q", name, p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return fmt.Errorf("bucket name %q ends with the reserved suffix %q", name, s)
		}
	}
	return nil
}
