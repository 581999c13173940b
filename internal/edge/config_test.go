package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func validConfig() Config {
	return Config{
		Origins: []Origin{{ID: "s3", URL: "http://127.0.0.1:7070/assets"}, {ID: "lb", URL: "https://127.0.0.1:8443"}},
		DefaultBehavior: Behavior{Target: "lb", CachePolicy: CachingDisabled(), OriginRequestPolicy: AllViewerExceptHostHeader(),
			AllowedMethods: methodsAll},
		Behaviors: []Behavior{cachedBehavior("/static/*"), cachedBehavior("/materials/*")},
	}
}

// TestConfigValidate checks that each bad field is named, with what is allowed.
func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	testKeys(t)
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unknown behaviour target", func(c *Config) { c.Behaviors[0].Target = "bucket" },
			`edge.behaviors[0].target: unknown origin or origin group "bucket"; known: lb, s3`},
		{"default target missing", func(c *Config) { c.DefaultBehavior.Target = "" },
			`edge.default_behavior.target: unknown origin or origin group ""`},
		{"TTL min > max", func(c *Config) { c.Behaviors[1].CachePolicy.MinTTL = 400 * 24 * time.Hour },
			"edge.behaviors[1].cache_policy.min_ttl: must be ≤ max_ttl (8760h0m0s), got 9600h0m0s"},
		{"default TTL outside bounds", func(c *Config) { c.Behaviors[0].CachePolicy.DefaultTTL = 0 },
			"edge.behaviors[0].cache_policy.default_ttl: must be from min_ttl (1s) to max_ttl"},
		{"negative TTL", func(c *Config) { c.Behaviors[0].CachePolicy.MaxTTL = -time.Second },
			"edge.behaviors[0].cache_policy.max_ttl: must be ≥ 0"},
		{"bad pattern char", func(c *Config) { c.Behaviors[0].PathPattern = "/static/[a-z]*" },
			`edge.behaviors[0].path_pattern: character '[' is not allowed`},
		{"pattern without slash", func(c *Config) { c.Behaviors[0].PathPattern = "static/*" },
			"edge.behaviors[0].path_pattern: must start with / or *"},
		{"empty pattern", func(c *Config) { c.Behaviors[1].PathPattern = "" },
			"edge.behaviors[1].path_pattern: required"},
		{"key on disabled caching", func(c *Config) {
			c.DefaultBehavior.CachePolicy.QueryStrings = Items{Behavior: All}
		}, "edge.default_behavior.cache_policy.max_ttl: caching is disabled (all TTLs 0), so the cache key must be empty"},
		{"cache key headers all", func(c *Config) { c.Behaviors[0].CachePolicy.Headers = Items{Behavior: All} },
			`edge.behaviors[0].cache_policy.headers.behavior: must be one of [none whitelist], got "all"`},
		{"whitelist without names", func(c *Config) { c.Behaviors[0].CachePolicy.Cookies = Items{Behavior: Whitelist} },
			`edge.behaviors[0].cache_policy.cookies.names: behavior "whitelist" needs at least one name`},
		{"names without whitelist", func(c *Config) {
			c.Behaviors[0].OriginRequestPolicy.QueryStrings = Items{Behavior: All, Names: []string{"a"}}
		}, `edge.behaviors[0].origin_request_policy.query_strings.names: names are only used with`},
		{"bad methods", func(c *Config) { c.Behaviors[0].AllowedMethods = []string{"GET", "POST"} },
			"edge.behaviors[0].allowed_methods: must be [GET HEAD], [GET HEAD OPTIONS] or all of"},
		{"unknown key group", func(c *Config) { c.Behaviors[1].TrustedKeyGroups = []string{"teachers"} },
			`edge.behaviors[1].trusted_key_groups: unknown key group "teachers"`},
		{"no origins", func(c *Config) { c.Origins = nil }, "edge.origins: at least one origin is required"},
		{"bad origin url", func(c *Config) { c.Origins[0].URL = "s3://bucket" },
			`edge.origins[0].url: must be an http or https URL, got scheme "s3"`},
		{"origin url with query", func(c *Config) { c.Origins[0].URL = "http://h/?x=1" },
			"edge.origins[0].url: must not carry a query"},
		{"duplicate origin", func(c *Config) { c.Origins[1].ID = "s3" }, `edge.origins[1].id: duplicate id "s3"`},
		{"OAC without credentials", func(c *Config) { c.Origins[0].OAC = &OAC{Region: "eu-west-1"} },
			"edge.origins[0].oac.credentials: required"},
		{"OAC without region", func(c *Config) {
			c.Origins[0].OAC = &OAC{Credentials: aws.AnonymousCredentials{}}
		}, "edge.origins[0].oac.region: required"},
		{"group of unknown origin", func(c *Config) {
			c.OriginGroups = []OriginGroup{{ID: "g", Primary: "s3", Secondary: "s4"}}
		}, `edge.origin_groups[0].secondary: must name an origin (one of [s3, lb]), got "s4"`},
		{"group same origin twice", func(c *Config) {
			c.OriginGroups = []OriginGroup{{ID: "g", Primary: "s3", Secondary: "s3"}}
		}, `edge.origin_groups[0].secondary: must differ from primary "s3"`},
		{"group bad failover code", func(c *Config) {
			c.OriginGroups = []OriginGroup{{ID: "g", Primary: "s3", Secondary: "lb", FailoverStatusCodes: []int{501}}}
		}, "edge.origin_groups[0].failover_status_codes: 501 is not allowed"},
		{"group id clashes with origin", func(c *Config) {
			c.OriginGroups = []OriginGroup{{ID: "lb", Primary: "s3", Secondary: "lb"}}
		}, `edge.origin_groups[0].id: duplicate id "lb"`},
		{"key group without keys", func(c *Config) { c.KeyGroups = []KeyGroup{{ID: "k"}} },
			"edge.key_groups[0].public_keys: at least one key is required"},
		{"key not PEM", func(c *Config) {
			c.KeyGroups = []KeyGroup{{ID: "k", PublicKeys: []PublicKey{{ID: "K1", PEM: []byte("ssh-rsa AAAA")}}}}
		}, "edge.key_groups[0].public_keys[0].pem: not a PEM block"},
		{"RSA key too small", func(c *Config) {
			c.KeyGroups = []KeyGroup{{ID: "k", PublicKeys: []PublicKey{{ID: "K1", PEM: pemPublic(t, &smallRSA.PublicKey)}}}}
		}, "edge.key_groups[0].public_keys[0].pem: RSA key has 1024 bits; CloudFront requires 2048"},
		{"ECDSA P-384", func(c *Config) {
			c.KeyGroups = []KeyGroup{{ID: "k", PublicKeys: []PublicKey{{ID: "K1", PEM: pemPublic(t, &p384.PublicKey)}}}}
		}, "edge.key_groups[0].public_keys[0].pem: ECDSA key on P-384; CloudFront requires P-256"},
		{"max object above cache", func(c *Config) { c.CacheBytes, c.MaxObjectBytes = 1<<20, 2<<20 },
			"edge.max_object_bytes: must be > 0 and ≤ cache_bytes (1048576), got 2097152"},
		{"connection attempts", func(c *Config) { c.ConnectionAttempts = 5 },
			"edge.connection_attempts: must be 1-3 (as on CloudFront), got 5"},
		{"listen address", func(c *Config) { c.Addr = "8443" }, `edge.listen: must be host:port, got "8443"`},
		{"TLS without certificate", func(c *Config) { c.TLS = &tls.Config{} }, "edge.tls: must carry a server certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v\nwant an error containing %q", err, tt.want)
			}
			if _, nerr := New(c); nerr == nil {
				t.Fatalf("New accepted an invalid config")
			}
		})
	}
	// Every problem is reported, not only the first.
	c := validConfig()
	c.Behaviors[0].Target = "x"
	c.Behaviors[1].CachePolicy.MinTTL = -1
	if err := c.Validate(); err == nil || strings.Count(err.Error(), "\n") < 1 {
		t.Errorf("want two errors, got %v", err)
	}
}

// TestStartNeedsTLS refuses to listen without a certificate, and refuses a
// second Start and a Start after Stop.
func TestStartNeedsTLS(t *testing.T) {
	e, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "edge.tls") {
		t.Fatalf("Start without TLS = %v, want an edge.tls error", err)
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != ErrStopped {
		t.Fatalf("Start after Stop = %v, want ErrStopped", err)
	}
}
