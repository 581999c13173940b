package terraform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/haven-platform/haven/internal/imds"
)

// bootInput is what the app_boot module renders: arguments and values that
// systemd would read differently from haven if they were written as they
// are ($, %, quotes, backslashes, newlines, spaces).
var bootInput = struct {
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
}{
	Command: []string{"serve", "--listen", "${HOST}:${PORT}", "--id=${INSTANCE_ID}", "--zone=${ZONE}", "$HOME", "${USER}", "100%", "%n", "a b", `quote"d`, `back\slash`},
	Environment: map[string]string{
		"PLAIN": "x", "QUOTE": `a"b`, "BACK": `c\d`, "DOLLAR": "$HOME ${X}", "TICK": "`id`",
		"NL": "line1\nline2", "SPACE": "  padded  ", "PCT": "100%", "EMPTY": "", "PORT": "8080",
	},
}

// rendered caches renderBoot's outputs for the tests that read them.
var rendered struct {
	sync.Mutex
	out map[string]string
}

// renderBoot applies modules/app_boot with bootInput in a scratch root
// module (no provider, no resources) and returns its outputs.
func renderBoot(t *testing.T) map[string]string {
	t.Helper()
	requireSetup(t)
	rendered.Lock()
	defer rendered.Unlock()
	if rendered.out == nil {
		rendered.out = applyBoot(t)
	}
	return rendered.out
}

func applyBoot(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join(env.tmp, "render-app-boot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root := `
variable "command" { type = list(string) }
variable "environment" { type = map(string) }
module "boot" {
  source           = "../module/modules/app_boot"
  name             = "lms"
  region           = "eu-west-1"
  artifacts_bucket = "lms-artifacts"
  artifact_key     = "lms/v1/lms"
  command          = var.command
  environment      = var.environment
}
output "user_data" { value = module.boot.user_data }
output "env_file" { value = module.boot.env_file }
output "unit" { value = module.boot.unit }
output "instance_env_script" { value = module.boot.instance_env_script }
`
	vars, _ := json.Marshal(bootInput)
	for name, content := range map[string]string{"main.tf": root, "terraform.tfvars.json": string(vars)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := ctx(t)
	for _, args := range [][]string{
		{"init", "-input=false", "-no-color", "-backend=false"},
		{"apply", "-input=false", "-no-color", "-auto-approve", "-lock=false"},
	} {
		if out, err := terraform(c, dir, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	out, err := terraform(c, dir, "output", "-json", "-no-color")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var raw map[string]struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	res := map[string]string{}
	for k, v := range raw {
		res[k] = v.Value
	}
	return res
}

// TestAppEnvironmentReachesTheAppVerbatim: the environment file the module
// writes, read with POSIX shell double-quote rules (the rules systemd
// documents for a double-quoted value of an EnvironmentFile), gives back
// every value exactly, newlines, quotes, $ and backslashes included.
func TestAppEnvironmentReachesTheAppVerbatim(t *testing.T) {
	out := renderBoot(t)
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte(out["env_file"]), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(bootInput.Environment))
	for k := range bootInput.Environment {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	script := `. "$1"` + "\n"
	for _, k := range keys {
		script += fmt.Sprintf(`printf '%%s\0' "$%s"`+"\n", k)
	}
	got, err := exec.Command("sh", "-c", script, "sh", file).Output()
	if err != nil {
		t.Fatalf("source the env file: %v\n%s", err, out["env_file"])
	}
	vals := strings.Split(strings.TrimSuffix(string(got), "\x00"), "\x00")
	if len(vals) != len(keys) {
		t.Fatalf("read %d values back, want %d:\n%s", len(vals), len(keys), out["env_file"])
	}
	for i, k := range keys {
		if vals[i] != bootInput.Environment[k] {
			t.Errorf("%s: the app would see %q, want %q", k, vals[i], bootInput.Environment[k])
		}
	}
}

// TestAppCommandExpandsOnlyHavensTokens: in ExecStart, the four tokens
// haven expands become the systemd variables of the same value, and every
// other $ and % stays literal; systemd-analyze accepts the unit.
func TestAppCommandExpandsOnlyHavensTokens(t *testing.T) {
	out := renderBoot(t)
	want := `ExecStart=/usr/local/bin/lms "serve" "--listen" "${HOST}:${PORT}" "--id=${HAVEN_INSTANCE_ID}" "--zone=${HAVEN_ZONE}" "$$HOME" "$${USER}" "100%%" "%%n" "a b" "quote\"d" "back\\slash"`
	var got string
	for _, line := range strings.Split(out["unit"], "\n") {
		if strings.HasPrefix(line, "ExecStart=") {
			got = line
		}
	}
	if got != want {
		t.Errorf("unit's\n%s\nwant\n%s", got, want)
	}
	for _, f := range []string{"EnvironmentFile=/etc/lms/env", "EnvironmentFile=/etc/lms/instance.env"} {
		if !strings.Contains(out["unit"], f+"\n") {
			t.Errorf("unit lacks %s", f)
		}
	}
	// The instance's values are read last, so nothing in the spec overrides them.
	if strings.Index(out["unit"], "/etc/lms/instance.env") < strings.Index(out["unit"], "/etc/lms/env\n") {
		t.Error("instance.env is read before the spec's env file")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian: apt-get install systemd): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lms")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(out["unit"], "/usr/local/bin/lms", bin)
	unit = strings.ReplaceAll(unit, "/etc/lms/", dir+"/")
	if err := os.WriteFile(filepath.Join(dir, "lms.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(analyze, "verify", filepath.Join(dir, "lms.service")).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s\n%s", err, b, unit)
	}
}

// TestBootScriptWritesTheInstanceValues runs the module's boot script
// against haven's own IMDSv2 endpoint: the app gets HOST (the private
// address), HAVEN_INSTANCE_ID and HAVEN_ZONE as the local fleet gives them,
// so `courses serve` listens on the instance's address, not 127.0.0.1.
func TestBootScriptWritesTheInstanceValues(t *testing.T) {
	out := renderBoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not found (Debian: apt-get install curl; Amazon Linux has it): %v", err)
	}
	srv := imds.New(imds.Config{Instance: imds.Instance{
		ID: "i-0123456789abcdef0", AvailabilityZone: "eu-west-1b", PrivateIP: "10.42.11.23",
	}})
	if err := srv.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })

	dir := t.TempDir()
	script := filepath.Join(dir, "instance-env")
	if err := os.WriteFile(script, []byte(out["instance_env_script"]), 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "instance.env")
	cmd := exec.Command(script, target)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT="+srv.Endpoint()+"/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("boot script: %v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if want := "HOST=10.42.11.23\nHAVEN_INSTANCE_ID=i-0123456789abcdef0\nHAVEN_ZONE=b\n"; string(got) != want {
		t.Errorf("instance.env = %q, want %q", got, want)
	}
}

// TestUserDataRunsTheBootScriptFirst: the cloud-config writes the three
// files and runs the boot script before it starts the unit.
func TestUserDataRunsTheBootScriptFirst(t *testing.T) {
	out := renderBoot(t)
	ud, ok := strings.CutPrefix(out["user_data"], "#cloud-config\n")
	if !ok {
		t.Fatalf("user data does not start with #cloud-config:\n%s", out["user_data"])
	}
	var cc struct {
		WriteFiles []struct{ Path, Permissions, Content string } `yaml:"write_files"`
		Runcmd     [][]string                                    `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(ud), &cc); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range cc.WriteFiles {
		files[f.Path] = f.Content
	}
	eq(t, "env file", files["/etc/lms/env"], out["env_file"])
	eq(t, "unit", files["/etc/systemd/system/lms.service"], out["unit"])
	eq(t, "script", files["/usr/local/libexec/lms-instance-env"], out["instance_env_script"])
	var order []string
	for _, c := range cc.Runcmd {
		order = append(order, c[0])
	}
	script := slices.Index(order, "/usr/local/libexec/lms-instance-env")
	start := slices.IndexFunc(cc.Runcmd, func(c []string) bool { return slices.Contains(c, "--now") })
	if script < 0 || start < 0 || script > start {
		t.Errorf("runcmd %v: the boot script must run before the unit starts", cc.Runcmd)
	}
}

// TestLaunchTemplateUsesAppBoot: the launch template's user data is the
// app_boot module's, fed with the spec's arguments and the app's
// environment (where app_environment and PORT are merged).
func TestLaunchTemplateUsesAppBoot(t *testing.T) {
	raw, _ := examplePlan(t)
	var doc struct {
		Configuration struct {
			RootModule struct {
				ModuleCalls map[string]struct {
					Module struct {
						ModuleCalls map[string]struct {
							Source      string         `json:"source"`
							Expressions map[string]any `json:"expressions"`
						} `json:"module_calls"`
					} `json:"module"`
				} `json:"module_calls"`
			} `json:"root_module"`
		} `json:"configuration"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	call, ok := doc.Configuration.RootModule.ModuleCalls["haven"].Module.ModuleCalls["app_boot"]
	if !ok {
		t.Fatal("the module does not call modules/app_boot")
	}
	eq(t, "source", call.Source, "./modules/app_boot")
	eq(t, "command", refsOf(call.Expressions, "command"), []string{"var.app_command"})
	eq(t, "environment", refsOf(call.Expressions, "environment"), []string{"local.app_environment"})
	p := parsePlan(t, raw)
	eq(t, "user_data", p.refs("aws_launch_template.app", "user_data"), []string{"module.app_boot.user_data", "module.app_boot"})
}
