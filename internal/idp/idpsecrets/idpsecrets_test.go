package idpsecrets

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/iam"
	"github.com/haven-platform/haven/internal/secrets"
)

func newStore(t *testing.T) *secrets.Store {
	t.Helper()
	discard := slog.New(slog.DiscardHandler)
	iss, err := iam.NewIssuer(iam.IssuerConfig{Account: "123456789012", Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := secrets.New(secrets.Config{Dir: filepath.Join(t.TempDir(), "secrets"), Region: "eu-west-1", Account: "123456789012",
		Keys: iss, Policies: iam.NewPolicies(), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sm.Stop(context.Background()) })
	return sm.Store()
}

func TestKeyStoreLoadsWhatItSaved(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	k := &KeyStore{Store: st, Name: "r/idp-signing-keys", Description: "keys"}
	if blob, err := k.Load(ctx); err != nil || blob != nil {
		t.Fatalf("Load before any save = %q, %v; want nil, nil", blob, err)
	}
	for _, v := range []string{`{"version":1,"keys":["a"]}`, `{"version":1,"keys":["a","b"]}`} {
		if err := k.Save(ctx, []byte(v)); err != nil {
			t.Fatal(err)
		}
		got, err := k.Load(ctx)
		if err != nil || string(got) != v {
			t.Fatalf("Load = %q, %v; want %q", got, err, v)
		}
	}
	d, err := st.DescribeSecret(secrets.DescribeSecretInput{SecretId: k.Name})
	if err != nil || d.Description != "keys" {
		t.Fatalf("describe = %+v, %v", d, err)
	}
}

func TestEnsureClientSecretCreatesOnceAndHashes(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	first, err := EnsureClientSecret(ctx, st, "r/oidc-client", "the app's client secret")
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || !strings.Contains(first.ARN, ":secret:r/oidc-client-") || !strings.HasPrefix(first.Hash, "$argon2id$") {
		t.Fatalf("first = %+v", first)
	}
	v, err := st.GetSecretValue(secrets.GetSecretValueInput{SecretId: "r/oidc-client"})
	if err != nil {
		t.Fatal(err)
	}
	plain := *v.SecretString
	if len(plain) != 43 || strings.Contains(first.Hash, plain) {
		t.Fatalf("secret %d bytes; the hash must not hold it", len(plain))
	}
	again, err := EnsureClientSecret(ctx, st, "r/oidc-client", "")
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.ARN != first.ARN {
		t.Fatalf("second call = %+v, want the same secret, not created", again)
	}
	v2, _ := st.GetSecretValue(secrets.GetSecretValueInput{SecretId: "r/oidc-client"})
	if !bytes.Equal([]byte(*v2.SecretString), []byte(plain)) {
		t.Fatal("the secret changed on the second call")
	}
}
