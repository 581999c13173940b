// Package terraform_test validates and plans the AWS module offline with the
// real hashicorp/aws provider and checks the planned architecture.
package terraform_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/haven-platform/haven/internal/spec"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/posture"
	"github.com/haven-platform/haven/internal/tfvars"
)

const (
	mirrorDir   = "/opt/tf-plugins"
	providerDir = mirrorDir + "/registry.terraform.io/hashicorp/aws"
	installHelp = `install Terraform >= 1.5 on PATH (https://developer.hashicorp.com/terraform/install) and mirror the AWS provider:
  terraform providers mirror -platform=linux_amd64 /opt/tf-plugins   (run in deploy/terraform/examples/courses with network access)
or set HAVEN_TF_MIRROR to an existing mirror directory`
)

// env is the shared state prepared once by TestMain.
var env struct {
	terraform string // path of the terraform binary
	mirror    string // provider mirror
	tmp       string // scratch root, removed at the end
	cliConfig string // CLI config pointing at the mirror
	example   string // copied examples/courses, initialised
	setupErr  error
}

func TestMain(m *testing.M) {
	code := func() int {
		if err := setup(); err != nil {
			// Never skip: fail every test with the reason and the fix.
			env.setupErr = err
		}
		defer func() {
			if env.tmp != "" {
				os.RemoveAll(env.tmp)
			}
		}()
		return m.Run()
	}()
	os.Exit(code)
}

func setup() error {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		if _, serr := os.Stat("/usr/local/bin/terraform"); serr != nil {
			return fmt.Errorf("terraform not found on PATH: %w\n%s", err, installHelp)
		}
		tf = "/usr/local/bin/terraform"
	}
	env.terraform = tf
	env.mirror = mirrorDir
	if m := os.Getenv("HAVEN_TF_MIRROR"); m != "" {
		env.mirror = m
	}
	if _, err := os.Stat(filepath.Join(env.mirror, "registry.terraform.io/hashicorp/aws")); err != nil {
		return fmt.Errorf("hashicorp/aws provider mirror missing at %s: %w\n%s", env.mirror, err, installHelp)
	}

	env.tmp, err = os.MkdirTemp("", "haven-terraform-test-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	env.cliConfig = filepath.Join(env.tmp, "terraformrc")
	cfg := fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
`, env.mirror)
	if err := os.WriteFile(env.cliConfig, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write CLI config: %w", err)
	}
	moduleCopy := filepath.Join(env.tmp, "module")
	if err := copyModule(".", moduleCopy); err != nil {
		return err
	}
	env.example = filepath.Join(moduleCopy, "examples", "courses")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := terraform(ctx, env.example, "init", "-input=false", "-no-color", "-backend=false"); err != nil {
		return fmt.Errorf("terraform init against the mirror %s: %w\n%s\n%s", env.mirror, err, out, installHelp)
	}
	return nil
}

// copyModule copies the .tf files of the module tree, leaving the checkout clean.
func copyModule(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if d.Name() == ".terraform" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !strings.HasSuffix(path, ".tf") && !strings.HasSuffix(path, ".tftpl") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("copy module: %w", err)
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// terraform runs the binary offline with mock credentials.
func terraform(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, env.terraform, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "TF_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env,
		"TF_CLI_CONFIG_FILE="+env.cliConfig,
		"TF_IN_AUTOMATION=1",
		"CHECKPOINT_DISABLE=1",
		"AWS_ACCESS_KEY_ID=mock",
		"AWS_SECRET_ACCESS_KEY=mock",
		"AWS_EC2_METADATA_DISABLED=true",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), fmt.Errorf("terraform %s: %w", args[0], err)
	}
	return stdout.Bytes(), nil
}

func requireSetup(t *testing.T) {
	t.Helper()
	if env.setupErr != nil {
		t.Fatalf("terraform test environment: %v", env.setupErr)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

func intp(n int) *int { return &n }

// coursesInput is the input generated from the repository's haven.yaml (the
// spec `haven up` runs locally), plus the account-specific values a real
// deployment adds.
func coursesInput() tfvars.Input {
	s, err := spec.LoadFile("../../haven.yaml")
	if err != nil {
		panic(err)
	}
	in := tfvars.FromSpec(s)
	in.Deployment = tfvars.Deployment{
		AMI:                      "ami-0123456789abcdef0",
		ArtifactsBucket:          "courses-artifacts",
		ArtifactKey:              "courses/v1/courses",
		DBLoginsArtifactKey:      "haven/v1/rds-logins.zip",
		CertificateARN:           "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
		OriginDomainName:         "origin.courses.example.edu",
		CloudFrontAliases:        []string{"courses.example.edu"},
		CloudFrontCertificateARN: "arn:aws:acm:us-east-1:123456789012:certificate/11111111-1111-1111-1111-111111111111",
		CloudFrontPrefixListID:   "pl-4fa04526",
		SigningPublicKey:         signingPublicKey(),
	}
	return in
}

// signingPublicKey is the PEM public half of an RSA key generated once per
// test run; the private half is never written anywhere.
var signingPublicKey = sync.OnceValue(func() string {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
})

func TestFmt(t *testing.T) {
	requireSetup(t)
	if out, err := terraform(ctx(t), ".", "fmt", "-check", "-recursive", "-diff", "-no-color"); err != nil {
		t.Fatalf("terraform fmt -check: %v (run `terraform fmt -recursive deploy/terraform`)\n%s", err, out)
	}
}

func TestValidate(t *testing.T) {
	requireSetup(t)
	if out, err := terraform(ctx(t), env.example, "validate", "-no-color"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// plans caches the plan of each scenario, produced once for the tests that
// read it.
var plans struct {
	mu   sync.Mutex
	done map[string]*planned
}

type planned struct {
	json []byte
	vars tfvars.Vars
	err  error
}

// examplePlan is the plan of examples/courses for the repository's haven.yaml.
func examplePlan(t *testing.T) ([]byte, tfvars.Vars) {
	t.Helper()
	return planScenario(t, "example", coursesInput())
}

// planScenario plans examples/courses with the variables generated from in,
// in a directory of its own, offline. The plan JSON is cached by name.
func planScenario(t *testing.T, name string, in tfvars.Input) ([]byte, tfvars.Vars) {
	t.Helper()
	return planScenarioWith(t, name, in, nil)
}

// planScenarioWith is planScenario with extra deployment variables (written
// to extra.auto.tfvars.json), for inputs haven.yaml does not carry yet.
func planScenarioWith(t *testing.T, name string, in tfvars.Input, extra map[string]any) ([]byte, tfvars.Vars) {
	t.Helper()
	requireSetup(t)
	plans.mu.Lock()
	defer plans.mu.Unlock()
	if plans.done == nil {
		plans.done = map[string]*planned{}
	}
	p, ok := plans.done[name]
	if !ok {
		p = runPlan(t, name, in, extra)
		plans.done[name] = p
	}
	if p.err != nil {
		t.Fatalf("plan examples/courses (%s): %v", name, p.err)
	}
	return p.json, p.vars
}

func runPlan(t *testing.T, name string, in tfvars.Input, extra map[string]any) *planned {
	vars, warnings, err := tfvars.Generate(in)
	if err != nil {
		return &planned{err: err}
	}
	for _, w := range warnings {
		t.Logf("tfvars warning (%s): %s", name, w)
	}
	b, err := vars.JSON()
	if err != nil {
		return &planned{err: err}
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := env.example
	if name != "example" {
		root := filepath.Join(env.tmp, "scenario-"+name)
		if err := copyModule(".", root); err != nil {
			return &planned{err: err}
		}
		dir = filepath.Join(root, "examples", "courses")
		if out, err := terraform(c, dir, "init", "-input=false", "-no-color", "-backend=false"); err != nil {
			return &planned{err: fmt.Errorf("%w\n%s", err, out)}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "terraform.tfvars.json"), b, 0o644); err != nil {
		return &planned{err: err}
	}
	if err := os.WriteFile(filepath.Join(dir, "ci.auto.tfvars.json"), []byte(`{"offline_plan": true}`+"\n"), 0o644); err != nil {
		return &planned{err: err}
	}
	if extra != nil {
		b, err := json.Marshal(extra)
		if err != nil {
			return &planned{err: err}
		}
		if err := os.WriteFile(filepath.Join(dir, "extra.auto.tfvars.json"), b, 0o644); err != nil {
			return &planned{err: err}
		}
	}
	if out, err := terraform(c, dir, "plan", "-input=false", "-no-color", "-lock=false", "-out=plan.bin"); err != nil {
		return &planned{err: fmt.Errorf("%w\n%s", err, out)}
	}
	out, err := terraform(c, dir, "show", "-json", "plan.bin")
	if err != nil {
		return &planned{err: fmt.Errorf("%w\n%s", err, out)}
	}
	if dst := os.Getenv("HAVEN_PLAN_JSON_OUT"); dst != "" {
		_ = os.WriteFile(strings.TrimSuffix(dst, ".json")+"-"+name+".json", out, 0o644) // for inspecting the plan by hand
	}
	return &planned{json: out, vars: vars}
}

func TestAuditExamplePlan(t *testing.T) {
	planJSON, _ := examplePlan(t)
	findings, err := posture.Audit(planJSON)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	posture.Render(&b, findings)
	t.Logf("audit of the example plan:\n%s", b.String())
	// Clean means no finding at all, not only no high one.
	if len(findings) != 0 {
		t.Errorf("the example plan has %d findings", len(findings))
	}
}
