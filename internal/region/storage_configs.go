package region

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/edge"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/objstore"
	"github.com/haven-platform/haven/internal/spec"
)

// account is the region's one account id: the issuer's, in every role and
// principal ARN.
const account = "000000000000"

// StorageConfigs are the object store's and the edge's configurations and
// the identities around them, before the region attaches what exists only
// at run time (credentials, certificates, the signing key's public half).
type StorageConfigs struct {
	// ObjStore is written to ObjStore.Dir/config.json for the store's own
	// process. Its Roles hold each role's S3 identity policy, from
	// objstore.buckets[].access: the same documents are attached to the
	// roles in the region's IAM policies, the ones the Secrets Manager API
	// evaluates. The edge's role has none: the bucket policy grants it.
	ObjStore objstore.Config
	// ReleaseRole is the release task's role; EdgeRole the edge's own
	// identity, which signs its origin requests (OAC).
	ReleaseRole, EdgeRole string
	// S3Endpoint is the store's URL, the app's AWS_ENDPOINT_URL_S3.
	S3Endpoint string
	// Edge is the edge (Addr empty: no edge). Origin OAC credentials, TLS
	// and the key group's public key are attached at start.
	Edge edge.Config
	// EdgeNames and EdgeIPs are what the edge's certificate names.
	EdgeNames []string
	EdgeIPs   []net.IP
	// SigningKeySecret is the secret holding the private key of the edge's
	// trusted key group ("" when no behaviour is signed).
	SigningKeySecret string
}

// storageConfigs derives the object store's and the edge's configurations.
// It is pure.
func storageConfigs(s spec.Spec, l Layout) (StorageConfigs, error) {
	c := StorageConfigs{
		ReleaseRole: s.Name + "-release", EdgeRole: s.Name + "-edge",
		S3Endpoint: "http://" + s.ObjStore.Listen,
	}
	appRole := s.Name + "-app"
	roleOf := map[string]string{spec.RoleApp: appRole, spec.RoleRelease: c.ReleaseRole, spec.RoleEdge: c.EdgeRole}
	c.ObjStore = objstore.Config{
		Dir: filepath.Join(l.StateDir, "objstore"), Listen: s.ObjStore.Listen, Region: s.AWS.Region, Account: account,
		MaxUploadBytes: int64(s.ObjStore.MaxUpload), Roles: map[string][]iam.Policy{c.EdgeRole: {}},
	}
	// The lifecycle rule counts whole days, as S3's does; a shorter period
	// (a test's) is one day of that length.
	switch a := s.ObjStore.AbortIncompleteUploads.D(); {
	case a == 0:
		c.ObjStore.AbortIncompleteMultipartUploadDays = -1
	case a%(24*time.Hour) == 0:
		c.ObjStore.AbortIncompleteMultipartUploadDays = int(a / (24 * time.Hour))
	default:
		c.ObjStore.AbortIncompleteMultipartUploadDays, c.ObjStore.DayLength = 1, objstore.Duration(a)
	}

	// The pages a browser uploads from: the load balancer's and the edge's.
	origins := httpsOrigins(s.LoadBalancer.HTTPS)
	if s.Edge.Listen != "" {
		origins = append(origins, httpsOrigins(s.Edge.Listen)...)
	}
	stmts := map[string][]iam.Statement{}
	for bi, b := range s.ObjStore.Buckets {
		bucket := objstore.Bucket{Name: b.Name, CORS: []objstore.CORSRule{{
			AllowedOrigins: origins, AllowedMethods: []string{"PUT", "GET", "HEAD"},
			AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}, MaxAgeSeconds: 600,
		}}}
		var bucketStmts []map[string]any
		for i, a := range b.Access {
			role := roleOf[a.Role]
			var keys []string
			for _, k := range a.Keys {
				keys = append(keys, "arn:aws:s3:::"+b.Name+"/"+k)
			}
			sid := fmt.Sprintf("Bucket%dGrant%d", bi, i)
			if a.Role == spec.RoleEdge {
				// As CloudFront's OAC on AWS: the bucket policy names the edge.
				bucketStmts = append(bucketStmts, map[string]any{
					"Sid": sid + "EdgeRead", "Effect": "Allow",
					"Principal": map[string]any{"AWS": []string{"arn:aws:iam::" + account + ":role/" + role}},
					"Action":    []string{"s3:GetObject"}, "Resource": keys,
				})
				continue
			}
			for _, act := range a.Actions {
				st := iam.Statement{Sid: sid + strings.ToUpper(act[:1]) + act[1:], Effect: iam.Allow, Resource: keys}
				switch act {
				case "read":
					st.Action = iam.StringList{"s3:GetObject"}
				case "write":
					st.Action = iam.StringList{"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
				case "delete":
					st.Action = iam.StringList{"s3:DeleteObject"}
				case "list":
					// Identity policies take no condition, so listing is
					// granted on the bucket, not on the keys' prefixes.
					st.Action, st.Resource = iam.StringList{"s3:ListBucket", "s3:ListBucketMultipartUploads"}, iam.StringList{"arn:aws:s3:::" + b.Name}
				}
				stmts[role] = append(stmts[role], st)
			}
		}
		if len(bucketStmts) > 0 {
			doc, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": bucketStmts})
			if err != nil {
				return c, err
			}
			bucket.Policy = doc
		}
		c.ObjStore.Buckets = append(c.ObjStore.Buckets, bucket)
	}
	for role, st := range stmts {
		c.ObjStore.Roles[role] = []iam.Policy{{Version: "2012-10-17", Statement: st}}
	}

	if s.Edge.Listen == "" {
		return c, nil
	}
	host, _, err := net.SplitHostPort(s.Edge.Listen)
	if err != nil {
		return c, fmt.Errorf("edge.listen: %w", err)
	}
	c.EdgeNames = []string{"localhost", s.Name + ".haven.local"}
	c.EdgeIPs = []net.IP{net.ParseIP("127.0.0.1")}
	if ip := net.ParseIP(host); ip != nil && !ip.Equal(c.EdgeIPs[0]) {
		c.EdgeIPs = append(c.EdgeIPs, ip)
	}
	e := edge.Config{
		Name: s.Name + "-edge", Addr: s.Edge.Listen,
		Origins: []edge.Origin{{ID: spec.TargetLB, URL: "https://" + s.LoadBalancer.HTTPS}},
		DefaultBehavior: edge.Behavior{Target: spec.TargetLB, CachePolicy: edge.CachingDisabled(),
			OriginRequestPolicy: edge.AllViewerExceptHostHeader(), Compress: true,
			AllowedMethods: []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}},
	}
	var signed bool
	for _, b := range s.Edge.Behaviors {
		lo, def, hi := b.TTLs()
		eb := edge.Behavior{PathPattern: b.Path, Target: b.Target, Compress: true,
			CachePolicy: edge.CachePolicy{Name: "spec", MinTTL: lo.D(), DefaultTTL: def.D(), MaxTTL: hi.D(),
				EnableAcceptEncodingGzip: b.Caching(), EnableAcceptEncodingBrotli: b.Caching()}}
		if b.Target == spec.TargetLB {
			eb.OriginRequestPolicy = edge.AllViewerExceptHostHeader()
			eb.AllowedMethods = e.DefaultBehavior.AllowedMethods
		} else {
			// The bucket's path-style URL is the origin path: /static/x is
			// the key static/x.
			if !slices.ContainsFunc(e.Origins, func(o edge.Origin) bool { return o.ID == b.Target }) {
				e.Origins = append(e.Origins, edge.Origin{ID: b.Target, URL: c.S3Endpoint + "/" + b.Target, OAC: &edge.OAC{Region: s.AWS.Region}})
			}
			eb.OriginRequestPolicy = edge.CORSS3Origin()
			eb.AllowedMethods = []string{"GET", "HEAD", "OPTIONS"}
		}
		if b.Signed {
			eb.TrustedKeyGroups, signed = []string{s.Edge.KeyGroup}, true
		}
		e.Behaviors = append(e.Behaviors, eb)
	}
	if signed {
		e.KeyGroups = []edge.KeyGroup{{ID: s.Edge.KeyGroup}}
		c.SigningKeySecret = s.Name + "/cloudfront-signing-key"
	}
	c.Edge = e
	return c, nil
}

// httpsOrigins are the browser origins of an HTTPS listener: its address,
// and localhost for a loopback one.
func httpsOrigins(listen string) []string {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return nil
	}
	port := fmt.Sprint(ap.Port())
	out := []string{"https://" + net.JoinHostPort(ap.Addr().String(), port)}
	if ap.Addr().IsLoopback() {
		out = append(out, "https://localhost:"+port)
	}
	return out
}

// appS3Env is the app's S3 settings: the endpoint, the bucket the app
// writes and the prefix it writes under, as the AWS module sets S3_BUCKET
// and S3_PREFIX.
func appS3Env(s spec.Spec, c StorageConfigs) map[string]string {
	// Browsers upload to the store's own address (presigned URLs); an
	// instance in a VPC reaches it through its zone's interface endpoint,
	// which the region sets as AWS_ENDPOINT_URL_S3 per instance.
	env := map[string]string{"AWS_ENDPOINT_URL_S3": c.S3Endpoint, "COURSES_S3_BROWSER_ENDPOINT": c.S3Endpoint}
	for _, b := range s.ObjStore.Buckets {
		for _, a := range b.Access {
			if a.Role == spec.RoleApp && slices.Contains(a.Actions, "write") && len(a.Keys) > 0 {
				env["S3_BUCKET"] = b.Name
				env["S3_PREFIX"] = strings.TrimSuffix(a.Keys[0], "*")
				return env
			}
		}
	}
	return env
}
