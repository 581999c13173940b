package spec

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/haven-platform/haven/internal/idp"
)

// Hashes in the shapes the identity provider takes (not of any real password).
const (
	argonHash  = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	bcryptHash = "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
)

func TestIdentityDefaultsAndAccounts(t *testing.T) {
	s, err := Parse([]byte(`name: lms
identity:
  enabled: true
  staff_sso_only: true
  users:
    - {username: dean@example.edu, name: The Dean, groups: [staff], password_hash: "`+bcryptHash+`"}
  generated:
    - {username: "teacher{n}@example.edu", count: 3, groups: [staff], password_hash: "`+argonHash+`"}
    - {username: "student{n}@example.edu", count: 2, groups: [students], password_hash: "`+argonHash+`"}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	id := s.Identity
	if id.Listen != "127.0.0.1:9443" || id.Name != "University sign-in" || id.ClientID != "lms" ||
		id.KeyRotation.String() != "90d" || id.KeyRetention.D().String() != "24h0m0s" || id.IDTokenLifetime.D().String() != "1h0m0s" {
		t.Errorf("defaults: %+v", id)
	}
	acc := id.Accounts()
	var names []string
	for _, a := range acc {
		names = append(names, a.Username+"="+strings.Join(a.Groups, ","))
	}
	want := "dean@example.edu=staff teacher1@example.edu=staff teacher2@example.edu=staff teacher3@example.edu=staff student1@example.edu=students student2@example.edu=students"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("accounts:\n got %s\nwant %s", got, want)
	}
	if acc[1].PasswordHash != argonHash || acc[0].Name != "The Dean" {
		t.Errorf("accounts lost their hash or name: %+v", acc[:2])
	}
	if d := Default().Identity; d.Enabled || d.StaffSSOOnly {
		t.Errorf("identity is on by default: %+v", d)
	}
}

func TestIdentityRefusesWhatIsWrong(t *testing.T) {
	tests := []struct{ name, in, field, msg string }{
		{"plaintext password", "identity:\n  enabled: true\n  users: [{username: a@x.edu, password_hash: hunter22}]\n", "identity.users[0].password_hash", "a password never goes in the spec"},
		{"no accounts", "identity: {enabled: true}\n", "identity.users", "at least one account"},
		{"sso only without identity", "identity: {staff_sso_only: true}\n", "identity.staff_sso_only", "needs identity.enabled"},
		{"not loopback", "identity: {listen: 10.0.0.1:9443}\n", "identity.listen", "loopback"},
		{"bad listen", "identity: {listen: nowhere}\n", "identity.listen", "IP address and port"},
		{"bad client id", "identity: {client_id: \"a b\"}\n", "identity.client_id", "letters, digits"},
		{"short retention", "identity: {id_token_lifetime: 2h, key_retention: 90m}\n", "identity.key_retention", "from 2h0m0s"},
		{"retention under the access tokens'", "identity: {key_retention: 30m}\n", "identity.key_retention", "from 1h0m0s"},
		{"long id token", "identity: {id_token_lifetime: 48h}\n", "identity.id_token_lifetime", "1m to 24h"},
		{"fast rotation", "identity: {key_rotation: 10s}\n", "identity.key_rotation", "0 (by `haven identity rotate-key` only)"},
		{"pattern without n", "identity:\n  generated: [{username: teacher@x.edu, count: 2, password_hash: \"" + argonHash + "\"}]\n", "identity.generated[0].username", "{n} once"},
		{"count zero", "identity:\n  generated: [{username: \"t{n}@x.edu\", count: 0, password_hash: \"" + argonHash + "\"}]\n", "identity.generated[0].count", "from 1 to 100000"},
		{"duplicate user", "identity:\n  users: [{username: a@x.edu, password_hash: \"" + argonHash + "\"}, {username: A@x.edu, password_hash: \"" + argonHash + "\"}]\n", "identity.users[1].username", "listed twice"},
		{"bad group", "identity:\n  users: [{username: a@x.edu, groups: [\"\"], password_hash: \"" + argonHash + "\"}]\n", "identity.users[0].groups[0]", "printable"},
		{"space in username", "identity:\n  users: [{username: \"a b@x.edu\", password_hash: \"" + argonHash + "\"}]\n", "identity.users[0].username", "without spaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "haven.yaml")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a spec error", err)
			}
			for _, p := range se.Problems {
				if p.Field == tc.field && strings.Contains(p.Msg, tc.msg) {
					if strings.Contains(p.Msg, "hunter22") {
						t.Errorf("the message repeats the password: %s", p.Msg)
					}
					return
				}
			}
			t.Errorf("problems %v: none is %s: …%s…", se.Problems, tc.field, tc.msg)
		})
	}
}

// TestIdentityHashShapeMatchesTheProvider checks the spec's shape check
// against hashes the provider's own function and bcrypt make, so a hash
// `haven identity hash` prints is never refused.
func TestIdentityHashShapeMatchesTheProvider(t *testing.T) {
	a, err := idp.HashSecret("exam-week-2026")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bcrypt.GenerateFromPassword([]byte("exam-week-2026"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{a, string(b), argonHash, bcryptHash} {
		if !hashRE.MatchString(h) {
			t.Errorf("hash %q is refused", h)
		}
	}
}
