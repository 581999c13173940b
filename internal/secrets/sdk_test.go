package secrets

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

const dbValue1 = `{"username":"app_a","password":"Pl41nText-One-7f3a9c"}`
const dbValue2 = `{"username":"app_b","password":"Pl41nText-Two-2b8e1d"}`

func TestSDKFullFlow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin, app := e.client(e.admin), e.client(e.app)

	cr, err := admin.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("db"), SecretString: aws.String(dbValue1), Description: aws.String("database login")})
	must(t, err)
	if !regexp.MustCompile(`^arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-[A-Za-z0-9]{6}$`).MatchString(aws.ToString(cr.ARN)) {
		t.Errorf("ARN = %q", aws.ToString(cr.ARN))
	}
	v1 := aws.ToString(cr.VersionId)
	if v1 == "" {
		t.Fatal("CreateSecret returned no VersionId")
	}
	_, err = admin.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("db"), SecretString: aws.String("x")})
	wantCode(t, "duplicate CreateSecret", err, "ResourceExistsException")

	got, err := app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	must(t, err)
	if aws.ToString(got.SecretString) != dbValue1 || aws.ToString(got.VersionId) != v1 || !slices.Equal(got.VersionStages, []string{"AWSCURRENT"}) || got.CreatedDate == nil || aws.ToString(got.Name) != "db" {
		t.Fatalf("GetSecretValue = %+v", got)
	}
	if d := time.Since(*got.CreatedDate); d < -time.Minute || d > time.Minute {
		t.Errorf("CreatedDate = %v", got.CreatedDate)
	}
	// By ARN too.
	if byARN, err := app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: cr.ARN}); err != nil || aws.ToString(byARN.SecretString) != dbValue1 {
		t.Errorf("GetSecretValue by ARN: %v", err)
	}

	token := "11111111-2222-3333-4444-555555555555"
	put, err := admin.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("db"), SecretString: aws.String(dbValue2), ClientRequestToken: aws.String(token)})
	must(t, err)
	if aws.ToString(put.VersionId) != token || !slices.Equal(put.VersionStages, []string{"AWSCURRENT"}) {
		t.Errorf("PutSecretValue = %+v", put)
	}
	// Idempotent retry; same token with another value is refused.
	if _, err := admin.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("db"), SecretString: aws.String(dbValue2), ClientRequestToken: aws.String(token)}); err != nil {
		t.Errorf("idempotent PutSecretValue: %v", err)
	}
	_, err = admin.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("db"), SecretString: aws.String("other"), ClientRequestToken: aws.String(token)})
	wantCode(t, "PutSecretValue reusing a token", err, "ResourceExistsException")

	prev, err := app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db"), VersionStage: aws.String("AWSPREVIOUS")})
	must(t, err)
	if aws.ToString(prev.SecretString) != dbValue1 || aws.ToString(prev.VersionId) != v1 {
		t.Errorf("AWSPREVIOUS = %s", aws.ToString(prev.VersionId))
	}
	byID, err := app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db"), VersionId: aws.String(v1)})
	must(t, err)
	if aws.ToString(byID.SecretString) != dbValue1 {
		t.Error("GetSecretValue by VersionId returned another value")
	}

	desc, err := app.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("db")})
	must(t, err)
	wantStages := map[string][]string{v1: {"AWSPREVIOUS"}, token: {"AWSCURRENT"}}
	if !stagesEqual(desc.VersionIdsToStages, wantStages) || aws.ToString(desc.Description) != "database login" || desc.CreatedDate == nil || desc.LastChangedDate == nil {
		t.Errorf("DescribeSecret = %+v", desc)
	}

	// Move AWSCURRENT back to v1: the version losing it becomes AWSPREVIOUS.
	_, err = admin.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("db"), VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(v1)})
	wantCode(t, "move without RemoveFromVersionId", err, "InvalidParameterException")
	_, err = admin.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("db"), VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(v1), RemoveFromVersionId: aws.String(token)})
	must(t, err)
	desc, err = app.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("db")})
	must(t, err)
	if want := (map[string][]string{v1: {"AWSCURRENT"}, token: {"AWSPREVIOUS"}}); !stagesEqual(desc.VersionIdsToStages, want) {
		t.Errorf("after move: %v, want %v", desc.VersionIdsToStages, want)
	}

	_, err = admin.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("api-key"), SecretBinary: []byte{0, 1, 2, 255}})
	must(t, err)
	bin, err := admin.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("api-key")})
	must(t, err)
	if string(bin.SecretBinary) != "\x00\x01\x02\xff" || bin.SecretString != nil {
		t.Errorf("binary secret = %v", bin.SecretBinary)
	}

	list, err := admin.ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
	must(t, err)
	var names []string
	for _, s := range list.SecretList {
		names = append(names, aws.ToString(s.Name))
	}
	if !slices.Equal(names, []string{"api-key", "db"}) {
		t.Errorf("ListSecrets names = %v", names)
	}
	page, err := admin.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(1)})
	must(t, err)
	if len(page.SecretList) != 1 || page.NextToken == nil {
		t.Fatalf("first page = %d entries, NextToken %v", len(page.SecretList), page.NextToken)
	}
	page2, err := admin.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(1), NextToken: page.NextToken})
	must(t, err)
	if len(page2.SecretList) != 1 || aws.ToString(page2.SecretList[0].Name) != "db" || page2.NextToken != nil {
		t.Errorf("second page = %+v", page2)
	}
	filtered, err := admin.ListSecrets(ctx, &secretsmanager.ListSecretsInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"api"}}}})
	must(t, err)
	if len(filtered.SecretList) != 1 || aws.ToString(filtered.SecretList[0].Name) != "api-key" {
		t.Errorf("filtered list = %d entries", len(filtered.SecretList))
	}

	vers, err := admin.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String("db")})
	must(t, err)
	if len(vers.Versions) != 2 {
		t.Errorf("ListSecretVersionIds = %d versions, want 2", len(vers.Versions))
	}

	_, err = app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db"), VersionStage: aws.String("AWSPENDING")})
	wantCode(t, "missing stage", err, "ResourceNotFoundException")
	_, err = admin.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("nope")})
	wantCode(t, "missing secret", err, "ResourceNotFoundException")
	// The app role may only read db: for anything else it is denied, found or not.
	_, err = app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("nope")})
	wantCode(t, "app reading a missing secret", err, "AccessDeniedException")
	_, err = app.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("api-key")})
	wantCode(t, "app reading api-key", err, "AccessDeniedException")
	_, err = app.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("db"), SecretString: aws.String("x")})
	wantCode(t, "app writing db", err, "AccessDeniedException")

	// State survives a restart.
	must(t, e.srv.Stop(ctx))
	e.start(e.srv.cfg.Logger)
	got, err = e.client(e.app).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	must(t, err)
	if aws.ToString(got.SecretString) != dbValue1 {
		t.Error("value changed across restart")
	}

	// Values never reach the state file, the audit log or the logs.
	files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		if leak := containsAny(string(b), dbValue1, dbValue2, "Pl41nText"); leak != "" {
			t.Errorf("%s contains plaintext %q", filepath.Base(f), leak)
		}
	}
	if leak := containsAny(e.logs.String(), "Pl41nText", e.admin.SecretAccessKey, e.app.SecretAccessKey, e.app.SessionToken); leak != "" {
		t.Errorf("logs contain a secret")
	}
}

func stagesEqual(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, w := range want {
		g := slices.Clone(got[k])
		slices.Sort(g)
		w = slices.Clone(w)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			return false
		}
	}
	return true
}

func TestSDKAuthFailures(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.client(e.admin).CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("db"), SecretString: aws.String(dbValue1)})
	must(t, err)
	get := &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")}

	t.Run("tampered signature", func(t *testing.T) {
		tamper := func(o *secretsmanager.Options) {
			o.HTTPClient = doerFunc(func(r *http.Request) (*http.Response, error) {
				h := r.Header.Get("Authorization")
				i := strings.LastIndex(h, "Signature=") + len("Signature=")
				flip := map[byte]byte{'0': '1'}
				c, ok := flip[h[i]]
				if !ok {
					c = '0'
				}
				r.Header.Set("Authorization", h[:i]+string(c)+h[i+1:])
				return http.DefaultClient.Do(r)
			})
		}
		_, err := e.client(e.app, tamper).GetSecretValue(ctx, get)
		wantCode(t, "tampered", err, "InvalidSignatureException")
	})
	t.Run("wrong secret key", func(t *testing.T) {
		c := e.app
		c.SecretAccessKey = strings.Repeat("x", 40)
		_, err := e.client(c).GetSecretValue(ctx, get)
		wantCode(t, "wrong key", err, "InvalidSignatureException")
	})
	t.Run("unknown key", func(t *testing.T) {
		c := e.app
		c.AccessKeyID = "ASIAUNKNOWNUNKNOWN00"
		_, err := e.client(c).GetSecretValue(ctx, get)
		wantCode(t, "unknown key", err, "UnrecognizedClientException")
	})
	t.Run("wrong session token", func(t *testing.T) {
		c := e.app
		c.SessionToken = "forged"
		_, err := e.client(c).GetSecretValue(ctx, get)
		wantCode(t, "forged token", err, "UnrecognizedClientException")
	})
	t.Run("another instance's token", func(t *testing.T) {
		c := e.app
		c.SessionToken = e.nobody.SessionToken
		_, err := e.client(c).GetSecretValue(ctx, get)
		wantCode(t, "swapped token", err, "UnrecognizedClientException")
	})
	t.Run("role without permission", func(t *testing.T) {
		_, err := e.client(e.nobody).GetSecretValue(ctx, get)
		wantCode(t, "nobody", err, "AccessDeniedException")
	})
	t.Run("clock skew", func(t *testing.T) {
		e.clk.Advance(6 * time.Minute)
		defer e.clk.Advance(-6 * time.Minute)
		_, err := e.client(e.app).GetSecretValue(ctx, get)
		wantCode(t, "skew", err, "InvalidSignatureException")
	})
	t.Run("expired credentials", func(t *testing.T) {
		short, err := e.iss.Issue("app", "i-0ccccccccccccccccc")
		must(t, err)
		if _, err := e.client(short).GetSecretValue(ctx, get); err != nil {
			t.Fatalf("fresh credentials refused: %v", err)
		}
		e.issClk.Advance(10*time.Minute + time.Second) // past the 10m TTL
		defer e.issClk.Advance(-(10*time.Minute + time.Second))
		_, err = e.client(short).GetSecretValue(ctx, get)
		wantCode(t, "expired", err, "ExpiredTokenException")
	})
	t.Run("missing authentication", func(t *testing.T) {
		resp, err := http.Post(e.srv.Endpoint(), "application/x-amz-json-1.1", strings.NewReader(`{"SecretId":"db"}`))
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-Errortype") != "MissingAuthenticationTokenException" {
			t.Errorf("unsigned request = %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
		}
	})

	recs, err := ReadAuditFile(e.srv.AuditPath(), AuditFilter{FailedOnly: true})
	must(t, err)
	codes := map[string]int{}
	for _, r := range recs {
		codes[r.Result]++
	}
	for _, want := range []string{"InvalidSignatureException", "UnrecognizedClientException", "AccessDeniedException", "MissingAuthenticationTokenException"} {
		if codes[want] == 0 {
			t.Errorf("audit has no %s record: %v", want, codes)
		}
	}
}
