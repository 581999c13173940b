package secrets

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/haven-platform/haven/internal/iam"
)

// TestCredentialsSurviveARestart: what one issuer handed out, sealed and
// read back by the next issuer, is accepted; the file holds no secret key
// in the clear.
func TestCredentialsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	changed := 0
	var i1 *iam.Issuer
	i1, err := iam.NewIssuer(iam.IssuerConfig{OnChange: func() { changed++ }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := i1.Issue("app", "i-1")
	if err != nil {
		t.Fatal(err)
	}
	if changed != 1 {
		t.Fatalf("OnChange called %d times, want 1", changed)
	}
	if err := SaveCredentials(dir, i1.Snapshot()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(c.SecretAccessKey)) || bytes.Contains(raw, []byte(c.AccessKeyID)) {
		t.Fatal("the credentials file holds a credential in the clear")
	}
	if st, _ := os.Stat(filepath.Join(dir, CredentialsFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	creds, err := LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	i2, _ := iam.NewIssuer(iam.IssuerConfig{})
	if n := i2.Restore(creds); n != 1 {
		t.Fatalf("restored %d, want 1", n)
	}
	got, err := i2.Lookup(c.AccessKeyID)
	if err != nil || got.SecretAccessKey != c.SecretAccessKey || got.Principal.InstanceID != "i-1" {
		t.Fatalf("lookup after restart: %+v, %v", got.Principal, err)
	}
	// Tampering is detected.
	raw[len(raw)-1] ^= 1
	_ = os.WriteFile(filepath.Join(dir, CredentialsFile), raw, 0o600)
	if _, err := LoadCredentials(dir); err == nil {
		t.Fatal("a tampered file opened")
	}
	if creds, err := LoadCredentials(t.TempDir()); err != nil || creds != nil {
		t.Fatalf("no file: %v, %v", creds, err)
	}
}
