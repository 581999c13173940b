package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAWSCLI runs the real `aws` CLI against the server. Credentials reach the child
// only through a 0600 credentials file in t.TempDir, never argv.
func TestAWSCLI(t *testing.T) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not installed: this test needs `aws` on PATH")
	}
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = e.client(e.admin).CreateSecret(ctx, secretsCreate("db", dbValue1))
	must(t, err)

	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials")
	must(t, os.WriteFile(credFile, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n",
		e.app.AccessKeyID, e.app.SecretAccessKey, e.app.SessionToken)), 0o600))
	cfgFile := filepath.Join(dir, "config")
	must(t, os.WriteFile(cfgFile, []byte("[default]\nregion = eu-west-1\n"), 0o600))

	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, awsBin, append([]string{"secretsmanager"}, append(args, "--endpoint-url", e.srv.Endpoint(), "--output", "json")...)...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "AWS_SHARED_CREDENTIALS_FILE="+credFile, "AWS_CONFIG_FILE="+cfgFile, "AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("get-secret-value", "--secret-id", "db")
	if err != nil {
		t.Fatalf("aws get-secret-value: %v\n%s", err, out)
	}
	var got struct {
		ARN, Name, VersionId, SecretString string
		VersionStages                      []string
		CreatedDate                        any
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode CLI output: %v\n%s", err, out)
	}
	if got.SecretString != dbValue1 || got.Name != "db" || len(got.VersionStages) != 1 || got.VersionStages[0] != "AWSCURRENT" || got.CreatedDate == nil {
		t.Errorf("CLI output = %+v", got)
	}
	out, err = run("describe-secret", "--secret-id", "db")
	if err != nil || !strings.Contains(out, "VersionIdsToStages") {
		t.Errorf("aws describe-secret: %v\n%s", err, out)
	}
	// The CLI maps errors from __type as well.
	out, err = run("put-secret-value", "--secret-id", "db", "--secret-string", "not-allowed")
	if err == nil || !strings.Contains(out, "AccessDeniedException") {
		t.Errorf("aws put-secret-value as app: %v\n%s", err, out)
	}
}
