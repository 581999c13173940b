package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/leakscan"
	"github.com/haven-platform/haven/internal/testkit"
)

// imdsCredsScript fetches an IMDSv2 token and the role's credentials from URL $1.
const imdsCredsScript = `T=$(curl -s -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$1/latest/api/token") || exit 1
curl -s -w '\n%{http_code}' -H "X-aws-ec2-metadata-token: $T" "$1/latest/meta-data/iam/security-credentials/$2"`

// TestSecretsIdentityAndRotation brings a real region up and proves issue 4's
// acceptance: per-instance identity isolation, the real aws CLI against the
// Secrets Manager API (success, tampered signature, AccessDenied, expired
// credentials), rotation under load with no failed request, the plaintext
// scan (clean, then a planted password found), and a daemon crash in the
// middle of a rotation.
func TestSecretsIdentityAndRotation(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		t.Fatal("the aws CLI is required (apt-get install awscli)")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required")
	}
	ctx := testCtx(t, 8*time.Minute)
	r := testkit.NewSpec(t, testkit.Options{Students: 20, Courses: 3})
	st := r.Up(ctx)
	info, err := r.Client.SecretsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Instances) < 2 {
		t.Fatalf("want 2 instances, got %d", len(st.Instances))
	}
	a, b := st.Instances[0], st.Instances[1]
	imdsA, imdsB := info.Metadata[a.ID], info.Metadata[b.ID]
	if imdsA == "" || imdsB == "" {
		t.Fatalf("metadata endpoints missing: %v", info.Metadata)
	}

	run := func(id string, argv ...string) api.RunResult {
		t.Helper()
		res, err := r.Client.RunOnInstance(ctx, id, api.RunRequest{Argv: argv})
		if err != nil {
			t.Fatalf("run %v on %s: %v", argv, id, err)
		}
		return res
	}

	t.Run("an instance reaches only its own identity", func(t *testing.T) {
		own := run(a.ID, "sh", "-c", imdsCredsScript, "sh", imdsA, info.AppRole)
		if !strings.HasSuffix(strings.TrimSpace(own.Stdout), "200") || !strings.Contains(own.Stdout, `"AccessKeyId"`) {
			t.Fatalf("instance %s could not read its own credentials: %q %q", a.ID, redact(own.Stdout), own.Stderr)
		}
		if st.Network.Mode == "vpc" {
			// Every instance's endpoint is 169.254.169.254 inside its own
			// namespace (TestVPCBoundaries proves B's never reaches A);
			// the /proc identification below is the loopback fallback's.
			if imdsA != imdsB || !strings.Contains(imdsA, "169.254.169.254") {
				t.Fatalf("in a VPC the metadata endpoints are %q and %q, want 169.254.169.254 for both", imdsA, imdsB)
			}
			return
		}
		other := run(a.ID, "sh", "-c", `curl -s -o /dev/null -w '%{http_code}' -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$1/latest/api/token"`, "sh", imdsB)
		if other.Stdout != "403" {
			t.Fatalf("instance %s asking instance %s's metadata endpoint for a token got %q, want 403", a.ID, b.ID, other.Stdout)
		}
		// Any other local process (this test) is refused too.
		out, _ := exec.CommandContext(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
			"-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", imdsA+"/latest/api/token").Output()
		if string(out) != "403" {
			t.Fatalf("a process outside every instance got %q from %s, want 403", out, imdsA)
		}
	})

	t.Run("aws CLI with instance credentials reads the DB secret", func(t *testing.T) {
		// Inside the instance, as its unprivileged user: a system-wide CLI,
		// given the instance's own Secrets Manager endpoint on its command
		// line (older CLIs ignore AWS_ENDPOINT_URL_SECRETS_MANAGER, and join
		// a metadata endpoint set in the environment and its path without a
		// slash); the credentials come from the instance's metadata.
		const wrap = `ep=${AWS_EC2_METADATA_SERVICE_ENDPOINT:-}; [ -n "$ep" ] && export AWS_EC2_METADATA_SERVICE_ENDPOINT="${ep%/}/"; ` +
			`exec "$0" --endpoint-url "$AWS_ENDPOINT_URL_SECRETS_MANAGER" "$@"`
		aws := []string{"/bin/sh", "-c", wrap, instanceAWS(t)}
		run := func(id string, argv ...string) api.RunResult { return run(id, append(aws, argv...)...) }
		res := run(a.ID, "secretsmanager", "get-secret-value", "--secret-id", info.DBSecret, "--query", "VersionStages", "--output", "text")
		if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "AWSCURRENT" {
			t.Fatalf("get-secret-value: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		res = run(a.ID, "secretsmanager", "put-secret-value", "--secret-id", info.DBSecret, "--secret-string", "{}")
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "AccessDeniedException") {
			t.Fatalf("put-secret-value by the app role: exit %d stderr %q, want AccessDeniedException", res.ExitCode, res.Stderr)
		}
		res = run(a.ID, "secretsmanager", "list-secrets")
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "AccessDeniedException") {
			t.Fatalf("list-secrets by the app role: exit %d stderr %q, want AccessDeniedException", res.ExitCode, res.Stderr)
		}
	})

	t.Run("tampered signature and expired credentials are refused", func(t *testing.T) {
		own := run(a.ID, "sh", "-c", imdsCredsScript, "sh", imdsA, info.AppRole)
		body, _, _ := strings.Cut(own.Stdout, "\n200")
		var c struct{ AccessKeyId, SecretAccessKey, Token string }
		if err := json.Unmarshal([]byte(body), &c); err != nil || c.AccessKeyId == "" {
			t.Fatalf("decode instance credentials: %v", err)
		}
		tampered := c
		tampered.SecretAccessKey = flip(c.SecretAccessKey)
		stderr := awsWith(t, ctx, info, tampered.AccessKeyId, tampered.SecretAccessKey, tampered.Token)
		if !strings.Contains(stderr, "InvalidSignatureException") {
			t.Fatalf("tampered signature: stderr %q, want InvalidSignatureException", stderr)
		}
		oc, err := r.Client.OperatorCredentials(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(oc.Expiration) + 200*time.Millisecond)
		stderr = awsWith(t, ctx, info, oc.AccessKeyID, oc.SecretAccessKey, oc.SessionToken)
		if !strings.Contains(stderr, "ExpiredTokenException") {
			t.Fatalf("expired credentials: stderr %q, want ExpiredTokenException", stderr)
		}
	})

	t.Run("rotation under load fails no request", func(t *testing.T) {
		out, errOut, err := r.Haven(ctx, "drill", "secret-rotation", "--rotations", "3", "--interval", "1500ms", "--rate", "20", "--users", "5", "--json")
		var rep drill.RotationReport
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("drill: %v %v\n%s\n%s", err, jerr, out, errOut)
		}
		if err != nil || !rep.Pass || rep.Failed != 0 || rep.Completed != 3 || !rep.StaleRefused || !rep.AuditOK || rep.AuditedGets == 0 {
			t.Fatalf("drill failed: %v\n%s", err, out)
		}
		t.Logf("rotation drill: %d requests, %d failed, %d/%d rotations, %d app fetches, %d audited", rep.Requests, rep.Failed, rep.Completed, rep.Requested, rep.AppFetches, rep.AuditedGets)
	})

	repo := cleanRepo(t)
	t.Run("audit secrets finds nothing, then a planted password", func(t *testing.T) {
		out, errOut, err := r.Haven(ctx, "audit", "secrets", "--json", "--repo", repo)
		var res SecretsScan
		if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || err != nil || len(res.Findings) != 0 {
			t.Fatalf("audit secrets on a clean region: err %v, findings %v\n%s", err, res.Findings, errOut)
		}
		if res.Scanned.LiveSecrets < 3 || len(res.Scanned.Processes) < 3 {
			t.Fatalf("scan looked at too little: %+v", res.Scanned)
		}
		// Plant the live password in a log file.
		pw := currentPassword(t, ctx, r.Client, info.DBSecret)
		planted := filepath.Join(r.StateDir, "logs", "planted.log")
		if err := os.WriteFile(planted, []byte("debug: connecting with "+pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, err = r.Haven(ctx, "audit", "secrets", "--json", "--repo", repo)
		os.Remove(planted)
		var ee *exec.ExitError
		if err == nil || !errorsAs(err, &ee) || ee.ExitCode() != 4 {
			t.Fatalf("audit secrets with a planted password: err %v, want exit 4", err)
		}
		if strings.Contains(out, pw) {
			t.Fatal("the scan printed the password it found")
		}
		var res2 SecretsScan
		if err := json.Unmarshal([]byte(out), &res2); err != nil {
			t.Fatal(err)
		}
		if len(res2.Findings) != 1 || res2.Findings[0].Where != planted || res2.Findings[0].Rule != "live-secret" || res2.Findings[0].Line != 1 {
			t.Fatalf("findings = %+v, want one live-secret in %s:1", res2.Findings, planted)
		}
	})

	t.Run("no password in any instance's env, argv or logs", func(t *testing.T) {
		pw := currentPassword(t, ctx, r.Client, info.DBSecret)
		s := &leakscan.Scanner{Literals: []leakscan.Literal{{Name: "current", Value: pw}}}
		st, _ := r.Client.Status(ctx)
		for _, in := range st.Instances {
			for _, pid := range leakscan.ProcessGroup(in.PID) {
				if f, _ := s.ScanProcess(pid, in.ID); len(f) > 0 {
					t.Errorf("password in %v", f)
				}
			}
		}
		f, err := s.ScanTree(ctx, filepath.Join(r.StateDir, "logs"), nil)
		if err != nil || len(f) > 0 {
			t.Errorf("password in logs: %v %v", f, err)
		}
	})

	t.Run("a daemon crash mid-rotation leaves AWSCURRENT working", func(t *testing.T) {
		before, err := r.Client.TestLogin(ctx, api.TestLoginRequest{VersionStage: "AWSCURRENT"})
		if err != nil || !before.LoggedIn {
			t.Fatalf("AWSCURRENT before: %+v %v", before, err)
		}
		if _, errOut, err := r.Haven(ctx, "down"); err != nil {
			t.Fatalf("down: %v %s", err, errOut)
		}
		t.Setenv(failpoint.Env, failpoint.SecretsCrashAfterSetSecret)
		st := r.Up(ctx)
		_, _, rerr := r.Haven(ctx, "secrets", "rotate", info.DBSecret)
		if rerr == nil {
			t.Fatal("rotate succeeded although the daemon was to crash after setSecret")
		}
		testkit.WaitGone(ctx, st.PID)
		os.Unsetenv(failpoint.Env)
		for _, pid := range r.Processes() { // instances die with the daemon (Pdeathsig); be sure
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		r.Up(ctx)
		after, err := r.Client.TestLogin(ctx, api.TestLoginRequest{VersionStage: "AWSCURRENT"})
		if err != nil || !after.LoggedIn {
			t.Fatalf("AWSCURRENT after the crash and restart: %+v %v", after, err)
		}
		if after.VersionID == before.VersionID {
			t.Logf("rotation rolled back (AWSCURRENT %s)", after.VersionID)
		} else {
			t.Logf("rotation finished at restart: AWSCURRENT %s → %s (user %s → %s)", before.VersionID, after.VersionID, before.Username, after.Username)
		}
		if _, err := r.Client.TestLogin(ctx, api.TestLoginRequest{VersionStage: "AWSPENDING"}); err == nil {
			t.Fatal("an AWSPENDING version is left after the restart")
		}
		if out, errOut, err := r.Haven(ctx, "secrets", "rotate", info.DBSecret); err != nil {
			t.Fatalf("rotate after restart: %v %s %s", err, out, errOut)
		}
	})
}

// awsWith runs `aws secretsmanager get-secret-value` from this process with
// the given credentials (in a 0600 file in a temp dir) and returns stderr.
func awsWith(t *testing.T, ctx context.Context, info api.SecretsInfo, akid, secret, token string) string {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "credentials")
	content := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n", akid, secret, token)
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f)
	cmd := exec.CommandContext(ctx, "aws", "secretsmanager", "get-secret-value", "--secret-id", info.DBSecret, "--query", "VersionStages", "--output", "text")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "AWS_SHARED_CREDENTIALS_FILE=" + f, "AWS_CONFIG_FILE=/dev/null",
		"AWS_REGION=" + info.Region, "AWS_DEFAULT_REGION=" + info.Region, "AWS_ENDPOINT_URL_SECRETS_MANAGER=" + info.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("aws get-secret-value succeeded with bad credentials")
	}
	return stderr.String()
}

func currentPassword(t *testing.T, ctx context.Context, c *api.Client, id string) string {
	t.Helper()
	oc, err := c.OperatorCredentials(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(aws.Config{Region: oc.Region, Credentials: credentials.NewStaticCredentialsProvider(oc.AccessKeyID, oc.SecretAccessKey, oc.SessionToken)},
		func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(oc.Endpoint) })
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Password string }
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil || len(v.Password) < 16 {
		t.Fatalf("decode secret: %v", err)
	}
	return v.Password
}

func cleanRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# app\nThe password comes from Secrets Manager.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "README.md"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	return dir
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func redact(s string) string {
	if i := strings.Index(s, "SecretAccessKey"); i >= 0 {
		return s[:i] + "…"
	}
	return s
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// instanceAWS returns an aws CLI the instances' unprivileged user can run:
// the file and every directory above it open to others. An install under
// /root (pyenv's) is out of an instance's reach, as it would be on EC2.
func instanceAWS(t *testing.T) string {
	t.Helper()
	cands := []string{"/usr/bin/aws", "/usr/local/bin/aws"}
	if p, err := exec.LookPath("aws"); err == nil {
		cands = append([]string{p}, cands...)
	}
	for _, c := range cands {
		ok := true
		for p := c; ok; p = filepath.Dir(p) {
			st, err := os.Stat(p)
			ok = err == nil && st.Mode().Perm()&0o001 != 0
			if p == "/" {
				break
			}
		}
		if ok {
			return c
		}
	}
	t.Fatalf("no aws CLI the instances' user can run among %v: install one system-wide (scripts/setup installs Debian's awscli)", cands)
	return ""
}
