package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/haven-platform/haven/internal/clock"
)

type failAt struct{ name string }

var errInjected = errors.New("injected crash")

func (f *failAt) Hit(name string) error {
	if f != nil && f.name == name {
		return errInjected
	}
	return nil
}

func TestCrashMidWriteLosesNothing(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Now())
	fp := &failAt{}
	s := openTestStore(t, dir, clk, fp)
	cr, err := s.CreateSecret(CreateSecretInput{Name: "db", SecretString: aws.String("committed-value")})
	must(t, err)
	stateBefore, err := os.ReadFile(filepath.Join(dir, StateFile))
	must(t, err)

	fp.name = FailAfterTempWrite
	if _, err := s.PutSecretValue(PutSecretValueInput{SecretId: "db", SecretString: aws.String("lost-value")}); err == nil {
		t.Fatal("PutSecretValue succeeded through the failpoint")
	}
	if _, err := s.CreateSecret(CreateSecretInput{Name: "other", SecretString: aws.String("lost")}); err == nil {
		t.Fatal("CreateSecret succeeded through the failpoint")
	}
	// The failed writes changed neither memory nor disk.
	if c := current(t, s, "db"); c.VersionId != cr.VersionId || *c.SecretString != "committed-value" {
		t.Errorf("in-memory state changed by failed write")
	}
	if _, err := s.DescribeSecret(DescribeSecretInput{SecretId: "other"}); err == nil {
		t.Error("failed CreateSecret is visible")
	}
	stateAfter, err := os.ReadFile(filepath.Join(dir, StateFile))
	must(t, err)
	if !bytes.Equal(stateBefore, stateAfter) {
		t.Error("state file changed by failed write")
	}
	temps, _ := filepath.Glob(filepath.Join(dir, StateFile+tempMarker+"*"))
	if len(temps) < 2 {
		t.Fatalf("temp files left = %d, want ≥ 2 (as a crash would)", len(temps))
	}
	// Plus a truncated temp file, as from a crash mid-write.
	full, err := os.ReadFile(temps[0])
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, StateFile+tempMarker+"truncated"), full[:len(full)/2], 0o600))

	// Restart: the last committed state is intact, stale temp files are gone.
	s2 := openTestStore(t, dir, clk, nil)
	if c := current(t, s2, "db"); c.VersionId != cr.VersionId || *c.SecretString != "committed-value" {
		t.Errorf("after restart current = %s %q", c.VersionId, *c.SecretString)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, StateFile+tempMarker+"*")); len(temps) != 0 {
		t.Errorf("stale temp files not removed: %v", temps)
	}
	// And it keeps working.
	if _, err := s2.PutSecretValue(PutSecretValueInput{SecretId: "db", SecretString: aws.String("next")}); err != nil {
		t.Fatal(err)
	}
	s3 := openTestStore(t, dir, clk, nil)
	if c := current(t, s3, "db"); *c.SecretString != "next" {
		t.Errorf("after second restart current = %q", *c.SecretString)
	}
}

func TestEncryptedAtRest(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.NewFake(time.Now()), nil)
	const plain = "correct-horse-battery-staple-9d1c"
	_, err := s.CreateSecret(CreateSecretInput{Name: "db", SecretString: aws.String(plain)})
	must(t, err)
	_, err = s.PutSecretValue(PutSecretValueInput{SecretId: "db", SecretBinary: []byte(plain + "-bin")})
	must(t, err)
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	must(t, err)
	if bytes.Contains(b, []byte(plain)) || bytes.Contains(b, []byte("correct-horse")) {
		t.Fatal("state file contains the plaintext")
	}
	// Each version has its own data key.
	var st state
	must(t, json.Unmarshal(b, &st))
	vs := st.Secrets["db"].Versions
	if len(vs) != 2 || bytes.Equal(vs[0].Sealed.WrappedKey, vs[1].Sealed.WrappedKey) || len(vs[0].Sealed.WrappedKey) != 12+32+16 {
		t.Errorf("wrapped data keys not distinct per version")
	}
	for _, f := range []string{StateFile, RootKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		must(t, err)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %#o, want 0600", f, fi.Mode().Perm())
		}
	}
	// Moving a sealed value to another version id breaks authentication.
	vs[1].Sealed, vs[0].Sealed = vs[0].Sealed, vs[1].Sealed
	swapped, _ := json.Marshal(st)
	must(t, os.WriteFile(filepath.Join(dir, StateFile), swapped, 0o600))
	s2 := openTestStore(t, dir, clock.NewFake(time.Now()), nil)
	_, err = s2.GetSecretValue(GetSecretValueInput{SecretId: "db"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeDecryptionFailure {
		t.Errorf("swapped ciphertexts: err = %v, want DecryptionFailure", err)
	}
}

func TestRootKeyChecks(t *testing.T) {
	dir := t.TempDir()
	openTestStore(t, dir, nil, nil)
	key := filepath.Join(dir, RootKeyFile)
	must(t, os.Chmod(key, 0o644))
	_, err := OpenStore(StoreConfig{Dir: dir, Region: testRegion, Account: testAccount})
	if err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("open with 0644 key: err = %v", err)
	}
	must(t, os.Chmod(key, 0o600))
	must(t, os.WriteFile(key, []byte("short"), 0o600))
	if _, err := OpenStore(StoreConfig{Dir: dir, Region: testRegion, Account: testAccount}); err == nil {
		t.Error("open with a short key succeeded")
	}
	// A different root key cannot open existing values.
	dir2 := t.TempDir()
	s := openTestStore(t, dir2, clock.NewFake(time.Now()), nil)
	_, err = s.CreateSecret(CreateSecretInput{Name: "db", SecretString: aws.String("v")})
	must(t, err)
	must(t, os.Remove(filepath.Join(dir2, RootKeyFile)))
	s2 := openTestStore(t, dir2, clock.NewFake(time.Now()), nil)
	if _, err := s2.GetSecretValue(GetSecretValueInput{SecretId: "db"}); err == nil {
		t.Error("value opened with another root key")
	}
}

func TestAuditTrail(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	admin, app := e.client(e.admin), e.client(e.app)
	_, err := admin.CreateSecret(ctx, secretsCreate("db", dbValue1))
	must(t, err)
	got, err := app.GetSecretValue(ctx, secretsGet("db"))
	must(t, err)
	_, err = e.client(e.nobody).GetSecretValue(ctx, secretsGet("db"))
	wantCode(t, "nobody", err, "AccessDeniedException")

	raw, err := os.ReadFile(e.srv.AuditPath())
	must(t, err)
	if leak := containsAny(string(raw), dbValue1, "Pl41nText", e.app.SecretAccessKey, e.app.SessionToken); leak != "" {
		t.Fatal("audit log contains a secret")
	}
	recs, err := ReadAuditFile(e.srv.AuditPath(), AuditFilter{Action: "GetSecretValue"})
	must(t, err)
	if len(recs) != 2 {
		t.Fatalf("GetSecretValue records = %d, want 2", len(recs))
	}
	ok, denied := recs[0], recs[1]
	if ok.Result != "Success" || ok.Role != "app" || ok.Instance != "i-0aaaaaaaaaaaaaaaa" || ok.SecretARN != aws.ToString(got.ARN) ||
		ok.VersionID != aws.ToString(got.VersionId) || ok.SourceIP != "127.0.0.1" || ok.RequestID == "" || ok.Principal != "arn:aws:sts::123456789012:assumed-role/app/i-0aaaaaaaaaaaaaaaa" {
		t.Errorf("success record = %+v", ok)
	}
	if denied.Result != "AccessDeniedException" || denied.Role != "nobody" || denied.SecretARN != aws.ToString(got.ARN) {
		t.Errorf("denied record = %+v", denied)
	}
	all, err := ReadAuditFile(e.srv.AuditPath(), AuditFilter{})
	must(t, err)
	if len(all) != 3 || all[0].Action != "CreateSecret" || all[0].Role != "haven-operator" {
		t.Errorf("all records = %+v", all)
	}
	if byInst, _ := ReadAuditFile(e.srv.AuditPath(), AuditFilter{Principal: "i-0bbbbbbbbbbbbbbbb"}); len(byInst) != 1 {
		t.Errorf("records of instance b = %d, want 1", len(byInst))
	}
	// A torn last line is skipped.
	f, err := os.OpenFile(e.srv.AuditPath(), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, _ = f.WriteString(`{"time":"2025-`)
	f.Close()
	if again, err := ReadAuditFile(e.srv.AuditPath(), AuditFilter{}); err != nil || len(again) != 3 {
		t.Errorf("with torn line: %d records, %v", len(again), err)
	}
}
