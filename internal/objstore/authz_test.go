package objstore

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/s3err"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// TestSigningKey checks the key derivation against AWS's published example
// (Signature Version 4, "derive a signing key").
func TestSigningKey(t *testing.T) {
	got := hex.EncodeToString(signingKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam"))
	if want := "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"; got != want {
		t.Fatalf("signing key %s, want %s", got, want)
	}
}

// seam returns a gatewayIAM over a keyring holding an app credential, on a
// fake clock.
func seam(t *testing.T) (*gatewayIAM, *Keyring, iam.Credentials, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	iss, err := iam.NewIssuer(iam.IssuerConfig{Account: testAccount, TTL: time.Hour, Clock: clk, Logger: testLogger(t)})
	must(t, err)
	app, err := iss.Issue(appRole, "i-0aaaaaaaaaaaaaaa1")
	must(t, err)
	kr := NewKeyring(testAccount, clk)
	must(t, kr.Put(app))
	cfg := baseConfig(t)
	return newGatewayIAM(kr, cfg), kr, app, clk
}

func TestDeriveSigningKey(t *testing.T) {
	gw, kr, app, clk := seam(t)
	key, acc, err := gw.DeriveSigningKey(app.AccessKeyID, app.SessionToken, "20260301", testRegion, "s3")
	must(t, err)
	if !slices.Equal(key, signingKey(app.SecretAccessKey, "20260301", testRegion, "s3")) {
		t.Error("derived key differs from the secret's")
	}
	wantARN := "arn:aws:sts::" + testAccount + ":assumed-role/" + appRole + "/i-0aaaaaaaaaaaaaaa1"
	if acc.Access != app.AccessKeyID || acc.Arn != wantARN || acc.RoleArn != "arn:aws:iam::"+testAccount+":role/"+appRole ||
		!acc.IsSession || acc.Role != auth.RoleUser || acc.Secret != "" {
		t.Errorf("account %v", acc)
	}
	if _, _, err := gw.DeriveSigningKey("ASIANOTHING", app.SessionToken, "20260301", testRegion, "s3"); err != auth.ErrNoSuchUser {
		t.Errorf("unknown key: %v", err)
	}
	for _, tok := range []string{"", "forged", app.SessionToken + "x"} {
		if _, _, err := gw.DeriveSigningKey(app.AccessKeyID, tok, "20260301", testRegion, "s3"); err != auth.ErrInvalidSessionToken {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	clk.Advance(time.Hour)
	_, _, err = gw.DeriveSigningKey(app.AccessKeyID, app.SessionToken, "20260301", testRegion, "s3")
	var se s3err.S3Error
	if !errors.As(err, &se) || se.BaseError().Code != "ExpiredToken" || se.StatusCode() != 400 {
		t.Errorf("expired: %v", err)
	}
	if kr.Live() != 0 {
		t.Errorf("live credentials after expiry: %d", kr.Live())
	}
}

// decisions reads back the matrix haven built for versitygw.
func decisions(t *testing.T, ev auth.PolicyEvaluation) [][]decision {
	t.Helper()
	v := reflect.ValueOf(ev.Decisions)
	out := make([][]decision, v.Len())
	for i := range out {
		row := v.Index(i)
		for j := 0; j < row.Len(); j++ {
			out[i] = append(out[i], decision(row.Index(j).Int()))
		}
	}
	return out
}

func TestEvaluatePolicy(t *testing.T) {
	must(t, checkDecisionsType())
	gw, _, app, _ := seam(t)
	actions := []auth.Action{auth.GetObjectAction, auth.DeleteObjectAction, auth.CreateBucketAction}
	resources := []string{"arn:aws:s3:::materials/a.pdf", "arn:aws:s3:::uploads/b.txt", "arn:aws:s3:::other/c"}
	ev, err := gw.EvaluatePolicy(app.AccessKeyID, app.SessionToken, actions, resources, nil)
	must(t, err)
	want := [][]decision{
		{allow, deny, deny},      // materials: read allowed, delete explicitly denied, buckets are the config's
		{allow, allow, deny},     // uploads
		{noMatch, noMatch, deny}, // a bucket the app has no policy for
	}
	if got := decisions(t, ev); !reflect.DeepEqual(got, want) {
		t.Errorf("decisions %v, want %v", got, want)
	}
	if ev.PrincipalArn != app.Principal.ARN() {
		t.Errorf("principal %q", ev.PrincipalArn)
	}
	// A key that vanished (or a wrong token) is denied everything.
	ev, err = gw.EvaluatePolicy(app.AccessKeyID, "wrong", actions[:1], resources[:2], nil)
	must(t, err)
	if got := decisions(t, ev); !reflect.DeepEqual(got, [][]decision{{deny}, {deny}}) {
		t.Errorf("wrong token: %v", got)
	}
}

func TestPostDecision(t *testing.T) {
	allowPut := func(res ...string) iam.Statement { return allowS3([]string{"s3:PutObject"}, res...) }
	denyPut := func(res ...string) iam.Statement {
		return iam.Statement{Effect: iam.Deny, Action: []string{"s3:PutObject"}, Resource: res}
	}
	bucketDeny := json.RawMessage(`{"Statement":[{"Effect":"Deny","Principal":{"AWS":"123456789012"},"Action":["s3:PutObject"],"Resource":"arn:aws:s3:::uploads/private/*"}]}`)
	bucketDenyGet := json.RawMessage(`{"Statement":[{"Effect":"Deny","Principal":{"AWS":"123456789012"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::uploads/*"}]}`)
	for _, tc := range []struct {
		name   string
		stmts  []iam.Statement
		bucket json.RawMessage
		want   decision
	}{
		{"whole bucket", []iam.Statement{allowPut("arn:aws:s3:::uploads/*")}, nil, allow},
		{"every bucket", []iam.Statement{allowPut("arn:aws:s3:::*")}, nil, allow},
		{"everything", []iam.Statement{allowS3([]string{"s3:*"}, "*")}, nil, allow},
		{"bucket-name wildcard", []iam.Statement{allowS3([]string{"s3:Put*"}, "arn:aws:s3:::up*")}, nil, allow},
		{"a prefix only", []iam.Statement{allowPut("arn:aws:s3:::uploads/teachers/*")}, nil, noMatch},
		{"one-character keys", []iam.Statement{allowPut("arn:aws:s3:::uploads/?")}, nil, noMatch},
		{"the bucket ARN itself", []iam.Statement{allowPut("arn:aws:s3:::uploads")}, nil, noMatch},
		{"another bucket", []iam.Statement{allowPut("arn:aws:s3:::other/*")}, nil, noMatch},
		{"read only", []iam.Statement{allowS3([]string{"s3:GetObject"}, "arn:aws:s3:::uploads/*")}, nil, noMatch},
		{"identity deny on a prefix", []iam.Statement{allowPut("arn:aws:s3:::uploads/*"), denyPut("arn:aws:s3:::uploads/private/*")}, nil, deny},
		{"identity deny elsewhere", []iam.Statement{allowPut("arn:aws:s3:::uploads/*"), denyPut("arn:aws:s3:::other/*")}, nil, allow},
		{"bucket policy deny on a prefix", []iam.Statement{allowPut("arn:aws:s3:::uploads/*")}, bucketDeny, deny},
		{"bucket policy deny of reads", []iam.Statement{allowPut("arn:aws:s3:::uploads/*")}, bucketDenyGet, allow},
	} {
		if got := postDecision([]iam.Policy{policy(tc.stmts...)}, tc.bucket, "uploads"); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestResolvePrincipals(t *testing.T) {
	gw, _, _, _ := seam(t)
	a := testAccount
	valid := []string{a, "arn:aws:iam::" + a + ":root", "arn:aws:iam::" + a + ":role/" + edgeRole, "arn:aws:sts::" + a + ":assumed-role/" + appRole + "/i-1"}
	invalid := []string{"arn:aws:iam::" + a + ":role/ghost", "arn:aws:iam::999999999999:role/" + appRole, "arn:aws:sts::" + a + ":assumed-role/" + appRole,
		"arn:aws:iam::" + a + ":user/bob", "ASIAXXXXXXXXXXXXXXXX"}
	got, err := gw.ResolvePrincipals(append(append([]string{}, valid...), invalid...))
	must(t, err)
	if !reflect.DeepEqual(got, invalid) {
		t.Errorf("invalid principals %v, want %v", got, invalid)
	}
	// Account management is haven's issuer's, not versitygw's.
	if err := gw.CreateAccount(auth.Account{Access: "x", Secret: "y"}); err == nil {
		t.Error("CreateAccount succeeded")
	}
	if _, err := gw.ListUserAccounts(); err == nil {
		t.Error("ListUserAccounts succeeded")
	}
}

func TestKeyring(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	iss, err := iam.NewIssuer(iam.IssuerConfig{Account: testAccount, TTL: time.Hour, Clock: clk, Logger: testLogger(t)})
	must(t, err)
	kr := NewKeyring(testAccount, clk)
	a1, _ := iss.Issue(appRole, "i-1")
	a2, _ := iss.Issue(appRole, "i-1")
	b1, _ := iss.Issue(appRole, "i-2")
	for _, c := range []iam.Credentials{a1, a2, b1} {
		must(t, kr.Put(c))
	}
	noToken := a1
	noToken.SessionToken = ""
	otherAccount := a1
	otherAccount.Principal.Account = "999999999999"
	noRole := a1
	noRole.Principal.Role = ""
	for name, c := range map[string]iam.Credentials{"no token": noToken, "other account": otherAccount, "no role": noRole, "empty": {}} {
		if err := kr.Put(c); err == nil {
			t.Errorf("Put %s: accepted", name)
		}
	}
	if got, err := kr.Lookup(a1.AccessKeyID); err != nil || got.SecretAccessKey != a1.SecretAccessKey {
		t.Fatalf("Lookup: %v", err)
	}
	if n := kr.RevokeInstance("i-1"); n != 2 || kr.Live() != 1 {
		t.Fatalf("RevokeInstance i-1 = %d, live %d", n, kr.Live())
	}
	if _, err := kr.Lookup(a1.AccessKeyID); !errors.Is(err, iam.ErrUnknownKey) {
		t.Fatalf("revoked key: %v", err)
	}
	clk.Advance(time.Hour)
	if _, err := kr.Lookup(b1.AccessKeyID); !errors.Is(err, iam.ErrExpired) {
		t.Fatalf("expired key: %v", err)
	}
	// Long-expired credentials are forgotten on the next Put.
	clk.Advance(expiredRetention + time.Minute)
	c, _ := iss.Issue(appRole, "i-3")
	must(t, kr.Put(c))
	if _, err := kr.Lookup(b1.AccessKeyID); !errors.Is(err, iam.ErrUnknownKey) {
		t.Fatalf("long-expired key: %v", err)
	}
	if !kr.Revoke(c.AccessKeyID) || kr.Revoke(c.AccessKeyID) {
		t.Fatal("Revoke twice should report true then false")
	}
}
