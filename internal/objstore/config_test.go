package objstore

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/versity/versitygw/s3api/utils"

	"github.com/haven-platform/haven/internal/iam"
)

func TestValidBucketName(t *testing.T) {
	for _, tc := range []struct {
		name string
		why  string // "" when valid
	}{
		{"materials", ""},
		{"course-42.static", ""},
		{"a1b", ""},
		{strings.Repeat("a", 63), ""},
		{"ab", "2 characters long"},
		{strings.Repeat("a", 64), "64 characters long"},
		{"Materials", "uppercase"},
		{"my_bucket", "character S3 does not allow"},
		{"-start", "character S3 does not allow"},
		{"end-", "character S3 does not allow"},
		{"a..b", "two adjacent dots"},
		{"192.168.5.4", "IP address"},
		{"xn--bucket", "reserved prefix"},
		{"sthree-x", "reserved prefix"},
		{"data-s3alias", "reserved suffix"},
		{"data--ol-s3", "reserved suffix"},
	} {
		err := ValidBucketName(tc.name)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("%q: %v, want valid", tc.name, err)
		case tc.why != "" && (err == nil || !strings.Contains(err.Error(), tc.why)):
			t.Errorf("%q: %v, want an error saying %q", tc.name, err, tc.why)
		}
		// versitygw's own check agrees on the rules it has.
		if tc.why == "" && !utils.IsValidBucketName(tc.name) {
			t.Errorf("%q: valid for haven, invalid for versitygw", tc.name)
		}
		if strings.Contains(tc.why, "characters long") || strings.Contains(tc.why, "uppercase") || strings.Contains(tc.why, "IP address") {
			if utils.IsValidBucketName(tc.name) {
				t.Errorf("%q: invalid for haven (%s), valid for versitygw", tc.name, tc.why)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := baseConfig(t)
		c.Dir = t.TempDir()
		return c.withDefaults()
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"bad bucket name", func(c *Config) { c.Buckets[1].Name = "Uploads_2026" }, `objstore.buckets[1].name: bucket name "Uploads_2026" has uppercase letters`},
		{"duplicate bucket", func(c *Config) { c.Buckets = append(c.Buckets, Bucket{Name: "materials"}) }, "objstore.buckets[2].name: bucket \"materials\" is already listed at buckets[0]"},
		{"public policy", func(c *Config) {
			c.Buckets[1].Policy = json.RawMessage(`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::uploads/*"}]}`)
		}, "objstore.buckets[1].policy: principal \"*\" grants public access"},
		{"unknown role in policy", func(c *Config) {
			c.Buckets[1].Policy = json.RawMessage(`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/ghost"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::uploads/*"}]}`)
		}, "objstore.buckets[1].policy: Invalid principal in policy"},
		{"policy for another bucket", func(c *Config) {
			c.Buckets[1].Policy = json.RawMessage(`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::materials/*"}]}`)
		}, "objstore.buckets[1].policy:"},
		{"policy not JSON", func(c *Config) { c.Buckets[1].Policy = json.RawMessage(`[1]`) }, "objstore.buckets[1].policy:"},
		{"no port", func(c *Config) { c.Listen = "127.0.0.1:0" }, "objstore.listen: \"127.0.0.1:0\" needs an explicit port"},
		{"no listen", func(c *Config) { c.Listen = "" }, "objstore.listen: required"},
		{"account", func(c *Config) { c.Account = "12" }, "objstore.account: must be 12 digits"},
		{"max upload", func(c *Config) { c.MaxUploadBytes = -1 }, "objstore.maxUploadBytes: must be between 1 and"},
		{"abort days", func(c *Config) { c.AbortIncompleteMultipartUploadDays = -2 }, "objstore.abortIncompleteMultipartUploadDays: must be ≥ 1, or -1"},
		{"role policy", func(c *Config) { c.Roles[appRole][0].Statement[0].Effect = "Maybe" }, "objstore.roles.courses-app[0].statement[0].Effect: must be Allow or Deny"},
		{"role name", func(c *Config) { c.Roles["bad role"] = nil }, "objstore.roles.bad role: not a valid IAM role name"},
		{"cors without origins", func(c *Config) { c.Buckets[1].CORS = []CORSRule{{AllowedMethods: []string{"PUT"}}} }, "objstore.buckets[1].cors:"},
		{"cors method", func(c *Config) {
			c.Buckets[1].CORS = []CORSRule{{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"PATCH"}}}
		}, "objstore.buckets[1].cors:"},
		{"interval", func(c *Config) { c.ScanInterval = Duration(time.Microsecond) }, "objstore.scanInterval: must be ≥ 1ms"},
	} {
		c := valid()
		c.Roles = map[string][]iam.Policy{appRole: {policy(allowS3([]string{"s3:GetObject"}, "*"))}, edgeRole: nil}
		c.Buckets = append([]Bucket{}, c.Buckets...)
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestConfigFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "objstore")
	cfg := baseConfig(t)
	cfg.DayLength = Duration(time.Hour)
	must(t, WriteConfig(dir, cfg))
	if fi, err := os.Stat(filepath.Join(dir, ConfigFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi, err)
	}
	got, err := LoadConfig(dir)
	must(t, err)
	if got.Listen != cfg.Listen || len(got.Buckets) != 2 || time.Duration(got.DayLength) != time.Hour || got.SweepInterval != Duration(time.Hour/24) ||
		got.Dir != dir || len(got.Roles[appRole]) != 1 || string(got.Buckets[0].Policy) == "" {
		t.Fatalf("round trip: %+v", got)
	}
	// An invalid configuration is not written, and the old file stays.
	bad := cfg
	bad.Buckets = []Bucket{{Name: "x"}}
	if err := WriteConfig(dir, bad); err == nil || !strings.Contains(err.Error(), "objstore.buckets[0].name") {
		t.Fatalf("WriteConfig of a bad bucket name: %v", err)
	}
	if again, err := LoadConfig(dir); err != nil || len(again.Buckets) != 2 {
		t.Fatalf("the old file after a refused write: %v %+v", err, again.Buckets)
	}
	// Strict decoding: an unknown field (here a policy Condition haven does not evaluate) is an error.
	must(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"listen":"127.0.0.1:9000","roles":{"r":[{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{}}]}]}}`), 0o600))
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), `unknown field "Condition"`) {
		t.Fatalf("LoadConfig with an unknown field: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"listen":"127.0.0.1:9000","dayLength":"soon"}`), 0o600))
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), `duration "soon"`) {
		t.Fatalf("LoadConfig with a bad duration: %v", err)
	}
}
