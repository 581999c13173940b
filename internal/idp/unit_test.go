package idp

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/crypto/bcrypt"
)

func TestHashSecret(t *testing.T) {
	h, err := HashSecret("pa55-word")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(h, "pa55-word") {
		t.Fatalf("hash = %s", h)
	}
	parsed, err := parseHash(h)
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.matches("pa55-word") || parsed.matches("pa55-worD") || parsed.matches("") {
		t.Error("argon2id comparison is wrong")
	}
	if h2, _ := HashSecret("pa55-word"); h2 == h {
		t.Error("two hashes of one secret are equal: no salt")
	}
	b, _ := bcrypt.GenerateFromPassword([]byte("legacy"), bcrypt.MinCost)
	bh, err := parseHash(string(b))
	if err != nil || !bh.matches("legacy") || bh.matches("Legacy") {
		t.Errorf("bcrypt hash: %v", err)
	}
	if bh.matches("legacy" + strings.Repeat("x", 80)) {
		t.Error("bcrypt matched a secret longer than 72 bytes")
	}
	if _, err := HashSecret(""); err == nil {
		t.Error("hashed an empty secret")
	}
}

func TestParseHashRefuses(t *testing.T) {
	for _, s := range []string{
		"", "plaintext-password", "$2a$10$short",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=9999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=99,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$c2Fs$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=19$m=19456,t=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		if _, err := parseHash(s); err == nil {
			t.Errorf("parseHash(%q) accepted", s)
		} else if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("the error repeats the hash: %v", err)
		}
	}
}

func validConfig(t *testing.T) Config {
	return Config{Issuer: "https://127.0.0.1:9443", TLS: &tls.Config{Certificates: []tls.Certificate{{}}},
		Keys: &memKeyStore{}, Users: testUsers(), Clients: testClients()}
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig(t).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"http issuer", func(c *Config) { c.Issuer = "http://127.0.0.1:9443" }, "idp.issuer: must be an https URL"},
		{"issuer with path", func(c *Config) { c.Issuer = "https://idp.example/oauth2" }, "idp.issuer: must have no path"},
		{"no TLS", func(c *Config) { c.TLS = nil }, "idp.tls: must carry a server certificate"},
		{"no key store", func(c *Config) { c.Keys = nil }, "idp.keys: required"},
		{"plaintext password", func(c *Config) { c.Users[0].PasswordHash = "correct horse" }, "idp.users[0].password_hash: not an argon2id or bcrypt hash"},
		{"plaintext client secret", func(c *Config) { c.Clients[0].SecretHash = clientSecret }, "idp.clients[0].secret_hash: not an argon2id or bcrypt hash"},
		{"duplicate user", func(c *Config) { c.Users[1].Username = strings.ToUpper(c.Users[0].Username) }, "idp.users[1].username: \"teacher1@example.edu\" is listed twice"},
		{"duplicate client", func(c *Config) { c.Clients[1].ID = clientID }, "idp.clients[1].id: \"courses\" is registered twice"},
		{"no redirect", func(c *Config) { c.Clients[0].RedirectURIs = nil }, "idp.clients[0].redirect_uris: at least one"},
		{"http redirect", func(c *Config) { c.Clients[0].RedirectURIs = []string{"http://courses.example.edu/cb"} }, "idp.clients[0].redirect_uris[0]: must be https"},
		{"fragment redirect", func(c *Config) { c.Clients[0].RedirectURIs = []string{"https://courses.example.edu/cb#x"} }, "without a fragment"},
		{"bad logout URI", func(c *Config) { c.Clients[0].PostLogoutRedirectURIs = []string{"/relative"} }, "idp.clients[0].post_logout_redirect_uris[0]"},
		{"short retention", func(c *Config) { c.KeyRetention = 30 * time.Minute }, "idp.key_retention: must be at least the longest token lifetime (1h0m0s)"},
		{"long code", func(c *Config) { c.CodeLifetime = time.Hour }, "idp.code_lifetime: must be 1s to 10m0s"},
		{"no users", func(c *Config) { c.Users = nil }, "idp.users: at least one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			c.Users, c.Clients = testUsers(), testClients()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			for _, h := range testHashes() {
				if strings.Contains(err.Error(), h) {
					t.Error("the error repeats a hash")
				}
			}
		})
	}
	// http on loopback is allowed for a developer's client.
	c := validConfig(t)
	c.Clients[0].RedirectURIs = []string{"http://127.0.0.1:8080/login/sso/callback"}
	if err := c.Validate(); err != nil {
		t.Errorf("loopback http redirect: %v", err)
	}
}

func TestPlanKeys(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		now  time.Time
		keys []keyMeta
		want keyPlan
	}{
		{"empty store", t0, nil, keyPlan{Rotate: true}},
		{"young key", t0.Add(day), []keyMeta{{ID: "a", Created: t0}}, keyPlan{}},
		{"key due", t0.Add(90 * day), []keyMeta{{ID: "a", Created: t0}}, keyPlan{Rotate: true}},
		{"no signing key", t0, []keyMeta{{ID: "a", Created: t0, Retired: t0}}, keyPlan{Rotate: true}},
		{"retired within retention", t0.Add(day - time.Second), []keyMeta{{ID: "a", Created: t0, Retired: t0}, {ID: "b", Created: t0}}, keyPlan{}},
		{"retired past retention", t0.Add(day), []keyMeta{{ID: "a", Created: t0, Retired: t0}, {ID: "b", Created: t0}}, keyPlan{Drop: []string{"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planKeys(tc.now, tc.keys, 90*day, day)
			if got.Rotate != tc.want.Rotate || !slices.Equal(got.Drop, tc.want.Drop) {
				t.Errorf("planKeys = %+v, want %+v", got, tc.want)
			}
		})
	}
	if p := planKeys(t0.Add(1000*day), []keyMeta{{ID: "a", Created: t0}}, -1, day); p.Rotate {
		t.Error("negative KeyRotation rotated")
	}
}

func TestApplyKeyPlanAndEncoding(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := newSigningKey(t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newSigningKey(t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keys := applyKeyPlan([]*signingKey{a}, keyPlan{Rotate: true}, t0.Add(time.Hour), b)
	if len(keys) != 2 || keys[0].retired != t0.Add(time.Hour) || !keys[1].retired.IsZero() || !a.retired.IsZero() {
		t.Fatalf("after rotation: %+v (input modified: %v)", metaOf(keys), !a.retired.IsZero())
	}
	blob, err := encodeKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeKeys(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(metaOf(back), metaOf(keys)) || !back[1].private.Equal(b.private) {
		t.Errorf("round trip: %+v", metaOf(back))
	}
	r, err := newKeyring(back)
	if err != nil || r.signing.id != b.id {
		t.Errorf("keyring: %v", err)
	}
	for _, bad := range []string{`nope`, `{"version":2,"keys":[]}`, `{"version":1,"keys":[{"kid":"x","alg":"RS256","private_key":"AAAA"}]}`,
		strings.Replace(string(blob), `"kid":"`+a.id, `"kid":"forged`, 1)} {
		if _, err := decodeKeys([]byte(bad)); err == nil {
			t.Errorf("decodeKeys accepted %.40s", bad)
		} else if strings.Contains(err.Error(), "MII") {
			t.Errorf("error carries key material: %v", err)
		}
	}
	if _, err := newKeyring([]*signingKey{keys[0]}); err == nil {
		t.Error("a keyring without a signing key")
	}
}

func TestLoginAllowed(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := 15 * time.Minute
	f := failedLogins{}
	for i := range 5 {
		if ok, _ := loginAllowed(f, t0, 5, w); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		f = nextFailures(f, t0.Add(time.Duration(i)*time.Minute), w)
	}
	ok, wait := loginAllowed(f, t0.Add(5*time.Minute), 5, w)
	if ok || wait != 10*time.Minute {
		t.Errorf("after 5 failures: allowed %v, wait %s; want refused for 10m", ok, wait)
	}
	if ok, _ := loginAllowed(f, t0.Add(w), 5, w); !ok {
		t.Error("still refused after the window")
	}
	if g := nextFailures(f, t0.Add(w), w); g.count != 1 || g.windowStart != t0.Add(w) {
		t.Errorf("a failure after the window starts a new one: %+v", g)
	}
}

func TestSessionSatisfies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bs := browserSession{subject: "u1", authTime: t0}
	age := func(n uint) *uint { return &n }
	for _, tc := range []struct {
		name string
		a    authRequest
		now  time.Time
		want bool
	}{
		{"plain", authRequest{}, t0.Add(time.Hour), true},
		{"prompt=login", authRequest{prompt: []string{oidc.PromptLogin}}, t0, false},
		{"max_age fresh", authRequest{maxAge: age(600)}, t0.Add(5 * time.Minute), true},
		{"max_age stale", authRequest{maxAge: age(600)}, t0.Add(11 * time.Minute), false},
		{"max_age=0", authRequest{maxAge: age(0)}, t0, false},
		{"hint for this user", authRequest{hintSubject: "u1"}, t0, true},
		{"hint for another user", authRequest{hintSubject: "u2"}, t0, false},
	} {
		if got := sessionSatisfies(&tc.a, bs, tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStartStop(t *testing.T) {
	e := newEnv(t)
	if err := e.p.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := e.p.Start(ctx); err != ErrStopped {
		t.Errorf("Start after Stop = %v", err)
	}
}

// BenchmarkHashSecret measures one argon2id hash: the cost of a sign-in's
// password check, and of each user a directory is built with.
func BenchmarkHashSecret(b *testing.B) {
	for b.Loop() {
		if _, err := HashSecret("exam-week-2026"); err != nil {
			b.Fatal(err)
		}
	}
}
