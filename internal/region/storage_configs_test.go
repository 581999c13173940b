package region

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/haven-platform/haven/internal/edge"
	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/objstore"
	"github.com/haven-platform/haven/internal/spec"
)

// TestStorageConfigsAreValid: what configs derives for the object store is
// a configuration the store accepts (its own validation, versitygw's bucket
// policy parser included), and the edge's, once the region attaches its
// run-time parts, an edge that starts routing.
func TestStorageConfigsAreValid(t *testing.T) {
	for _, name := range []string{"default", "single-az"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := spec.Parse(in, name+".yaml")
			if err != nil {
				t.Fatal(err)
			}
			c, err := configs(s, Layout{StateDir: t.TempDir(), PGRoot: "/x/pg", AppCommand: []string{"/bin/true"}})
			if err != nil {
				t.Fatal(err)
			}
			st := c.Storage
			if err := objstore.WriteConfig(st.ObjStore.Dir, st.ObjStore); err != nil {
				t.Fatalf("the store refuses its derived configuration: %v", err)
			}
			if _, err := objstore.LoadConfig(st.ObjStore.Dir); err != nil {
				t.Fatal(err)
			}
			key, err := edge.NewSigningKey()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := edge.ParseSigningKey(key)
			e := st.Edge
			for i := range e.Origins {
				if e.Origins[i].OAC != nil {
					oac := *e.Origins[i].OAC
					oac.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return aws.Credentials{}, nil })
					e.Origins[i].OAC = &oac
				}
			}
			e.KeyGroups[0].PublicKeys = []edge.PublicKey{{ID: pub.ID, PEM: pub.PublicPEM}}
			if _, err := edge.New(e); err != nil {
				t.Fatalf("the edge refuses its derived configuration: %v", err)
			}
		})
	}
}

// TestStoragePolicies: the app role may read and write materials only,
// the release task may write static files, and the bucket policy names the
// edge's role alone, for reads of /static and /materials.
func TestStoragePolicies(t *testing.T) {
	s, err := spec.Parse([]byte("name: courses\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := storageConfigs(s, Layout{StateDir: "/s"})
	if err != nil {
		t.Fatal(err)
	}
	roles := c.ObjStore.Roles
	for _, tt := range []struct {
		role, action, resource string
		want                   iam.Decision
	}{
		{"courses-app", "s3:GetObject", "arn:aws:s3:::courses-assets/materials/courses/1/a.pdf", iam.Allowed},
		{"courses-app", "s3:PutObject", "arn:aws:s3:::courses-assets/materials/courses/1/a.pdf", iam.Allowed},
		{"courses-app", "s3:PutObject", "arn:aws:s3:::courses-assets/static/style.css", iam.ImplicitDeny},
		{"courses-app", "s3:GetObject", "arn:aws:s3:::courses-assets/static/style.css", iam.ImplicitDeny},
		{"courses-app", "s3:ListBucket", "arn:aws:s3:::courses-assets", iam.ImplicitDeny},
		{"courses-app", "s3:DeleteObject", "arn:aws:s3:::courses-assets/materials/x", iam.ImplicitDeny},
		{"courses-release", "s3:PutObject", "arn:aws:s3:::courses-assets/static/style.css", iam.Allowed},
		{"courses-release", "s3:ListBucket", "arn:aws:s3:::courses-assets", iam.Allowed},
		{"courses-edge", "s3:GetObject", "arn:aws:s3:::courses-assets/static/style.css", iam.ImplicitDeny}, // the bucket policy grants it
	} {
		if got := iam.Evaluate(roles[tt.role], tt.action, tt.resource); got != tt.want {
			t.Errorf("%s %s on %s = %v, want %v", tt.role, tt.action, tt.resource, got, tt.want)
		}
	}
	pol := string(c.ObjStore.Buckets[0].Policy)
	for _, want := range []string{`"arn:aws:iam::000000000000:role/courses-edge"`, `"s3:GetObject"`, `courses-assets/static/*`, `courses-assets/materials/*`} {
		if !strings.Contains(pol, want) {
			t.Errorf("bucket policy %s lacks %s", pol, want)
		}
	}
	if strings.Count(pol, "role/") != 1 {
		t.Errorf("bucket policy names another principal than the edge: %s", pol)
	}
}

// TestStoragePoliciesOfTheAppRole: what derive adds to the app role's own
// policy from these tiers: nothing before the store and the key are up,
// then the S3 statements of the spec's grants and the read of the signing
// key's secret (the only secret besides its own it may read).
func TestStoragePoliciesOfTheAppRole(t *testing.T) {
	s, err := spec.Parse([]byte("name: courses\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := configs(s, Layout{StateDir: "/s", PGRoot: "/s/pg", AppCommand: []string{"/bin/courses"}})
	if err != nil {
		t.Fatal(err)
	}
	const keyARN = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:courses/cloudfront-signing-key-AbCdEf"
	var v tiers
	if ps := storagePolicies(&v, c); len(ps) != 0 {
		t.Fatalf("before the store and the key: %d policies, want none", len(ps))
	}
	v.st.s3Up, v.st.keyARN = true, keyARN
	ps := append([]iam.Policy{appPolicy("arn:aws:secretsmanager:eu-west-1:000000000000:secret:courses/db-x")}, storagePolicies(&v, c)...)
	for _, tt := range []struct {
		action, resource string
		want             iam.Decision
	}{
		{"secretsmanager:GetSecretValue", "arn:aws:secretsmanager:eu-west-1:000000000000:secret:courses/db-x", iam.Allowed},
		{"secretsmanager:GetSecretValue", keyARN, iam.Allowed},
		{"secretsmanager:PutSecretValue", keyARN, iam.ImplicitDeny},
		{"secretsmanager:GetSecretValue", "arn:aws:secretsmanager:eu-west-1:000000000000:secret:other-y", iam.ImplicitDeny},
		{"s3:PutObject", "arn:aws:s3:::courses-assets/materials/courses/1/a.pdf", iam.Allowed},
		{"s3:PutObject", "arn:aws:s3:::courses-assets/static/style.css", iam.ImplicitDeny},
	} {
		if got := iam.Evaluate(ps, tt.action, tt.resource); got != tt.want {
			t.Errorf("app role %s on %s = %v, want %v", tt.action, tt.resource, got, tt.want)
		}
	}
}
