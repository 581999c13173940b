package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSecrets answers GetSecretValue (JSON 1.1) with the current password.
// It stands in for haven's Secrets Manager API, which lives in another
// package; the app only needs the one call.
type fakeSecrets struct {
	mu       sync.Mutex
	password string
	calls    int
}

func (f *fakeSecrets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" ||
		!strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		http.Error(w, `{"__type":"InvalidRequestException"}`, http.StatusBadRequest)
		return
	}
	var in struct{ SecretId, VersionStage string }
	_ = json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	f.calls++
	pw := f.password
	f.mu.Unlock()
	if in.SecretId != "courses/db" || in.VersionStage != "AWSCURRENT" {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"no such secret"}`))
		return
	}
	secret, _ := json.Marshal(map[string]any{"username": "app", "password": pw})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:courses/db", "Name": "courses/db",
		"VersionId": fmt.Sprintf("v%d", f.calls), "SecretString": string(secret), "VersionStages": []string{"AWSCURRENT"},
	})
}

func (f *fakeSecrets) set(pw string) {
	f.mu.Lock()
	f.password = pw
	f.mu.Unlock()
}

func (f *fakeSecrets) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestSecretsManagerCredentials connects with a password from the Secrets
// Manager API, rotates it, and checks that a 28P01 makes the app refetch
// AWSCURRENT and reconnect, without the password reaching the log.
func TestSecretsManagerCredentials(t *testing.T) {
	pg := startPG(t)
	ctx := context.Background()
	admin := openTestDB(t, pg, testLogger(t))
	if _, err := admin.Pool().Exec(ctx, "CREATE ROLE app LOGIN PASSWORD 'first-Pa55word'"); err != nil {
		t.Fatal(err)
	}
	// Password auth for role app over TCP; trust stays for the test's admin.
	hba := filepath.Join(pg.data, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hba, append([]byte("host all app 127.0.0.1/32 scram-sha-256\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Pool().Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}

	fake := &fakeSecrets{password: "first-Pa55word"}
	sm := httptest.NewServer(fake)
	defer sm.Close()
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sm.URL)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("COURSES_DB_SECRET_ID", "courses/db")

	var logBuf bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logMu, &logBuf}, nil))
	// The connection string names no user and no password: both come from
	// the secret.
	conn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable", pg.port)
	db, err := openFromEnv(ctx, conn, 2, 5*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	whoami := func() (string, error) {
		var u string
		err := db.Read(ctx, func(ctx context.Context, q Querier) error {
			return q.QueryRow(ctx, "SELECT current_user").Scan(&u)
		})
		return u, err
	}
	if u, err := whoami(); err != nil || u != "app" {
		t.Fatalf("current_user = %q, %v; want app", u, err)
	}
	if got := fake.count(); got != 1 {
		t.Errorf("GetSecretValue calls = %d, want 1", got)
	}
	db.Pool().Reset() // new connections reuse the cached secret
	if _, err := whoami(); err != nil || fake.count() != 1 {
		t.Errorf("reconnect with cached secret: %v, calls %d; want nil, 1", err, fake.count())
	}

	// Rotation: the database and the secret change; the cache is stale.
	if _, err := admin.Pool().Exec(ctx, "ALTER ROLE app PASSWORD 'second-Pa55word'"); err != nil {
		t.Fatal(err)
	}
	fake.set("second-Pa55word")
	db.Pool().Reset()
	if u, err := whoami(); err != nil || u != "app" {
		t.Fatalf("after rotation: current_user = %q, %v; want app", u, err)
	}
	if got := fake.count(); got != 2 {
		t.Errorf("GetSecretValue calls after rotation = %d, want 2 (one refetch)", got)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logBuf.String(), "auth_failed") {
		t.Errorf("expected the 28P01 retry to be logged:\n%s", logBuf.String())
	}
	if strings.Contains(logBuf.String(), "Pa55word") {
		t.Errorf("password in log:\n%s", logBuf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
