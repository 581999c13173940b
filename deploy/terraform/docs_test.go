package terraform_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/parity"
)

// variablesIn returns the variable names declared in the .tf files of dir.
func variablesIn(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	re := regexp.MustCompile(`(?m)^variable "([a-z0-9_]+)"`)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestDocsNameRealVariables: every variable docs/aws.md tells a user to set
// (the deployment values file) or that the classification says `haven aws
// tfvars` writes (internal/parity, which renders the docs' tables) is a
// variable of examples/courses, the root module a user applies.
func TestDocsNameRealVariables(t *testing.T) {
	b, err := os.ReadFile("../../docs/aws.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	example := variablesIn(t, "examples/courses")
	var named []string

	start := strings.Index(doc, "deploy.auto.tfvars.json\n")
	if start < 0 {
		t.Fatal("docs/aws.md has no deploy.auto.tfvars.json example")
	}
	block := doc[start : start+strings.Index(doc[start:], "```")]
	for _, m := range regexp.MustCompile(`"([a-z0-9_]+)":`).FindAllStringSubmatch(block, -1) {
		named = append(named, m[1])
	}
	for _, f := range parity.Fields {
		if f.Kind == parity.Exported {
			named = append(named, strings.Split(strings.Split(f.Variable, ".")[0], "[")[0])
		}
	}
	if len(named) < 20 {
		t.Fatalf("found only %d variable names in docs/aws.md; did its format change?", len(named))
	}
	for _, n := range named {
		if !slices.Contains(example, n) {
			t.Errorf("docs/aws.md names variable %q, which examples/courses does not declare", n)
		}
	}
}

// TestModuleReadmeListsEveryInput: the module README's input table names
// every variable of the module, and nothing else.
func TestModuleReadmeListsEveryInput(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Inputs")
	end := strings.Index(doc, "## Outputs")
	if start < 0 || end < start {
		t.Fatal("README.md has no Inputs section before Outputs")
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(doc[start:end], "\n") {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| Name") {
			continue
		}
		for _, n := range strings.Split(strings.Split(line, "|")[1], "/") {
			listed[strings.TrimSpace(n)] = true
		}
	}
	module := variablesIn(t, ".")
	for _, v := range module {
		if !listed[v] {
			t.Errorf("README.md inputs lack %s", v)
		}
	}
	for n := range listed {
		if n != "" && n != "---" && !slices.Contains(module, n) {
			t.Errorf("README.md lists input %q, which the module does not declare", n)
		}
	}
}

// TestDocumentedDeployUsesRealOutputs: the deploy steps in docs/aws.md
// (uploading the static files, invalidating them, storing the signing key)
// read outputs that examples/courses declares.
func TestDocumentedDeployUsesRealOutputs(t *testing.T) {
	b, err := os.ReadFile("../../docs/aws.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.Contains(doc, "courses static export static-out") || !strings.Contains(doc, "aws s3 sync static-out") {
		t.Error("docs/aws.md does not upload the static files (courses static export static-out, then aws s3 sync static-out …)")
	}
	outs, err := os.ReadFile("examples/courses/outputs.tf")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`terraform output -raw ([a-z0-9_]+)`).FindAllStringSubmatch(doc, -1)
	var names []string
	for _, m := range used {
		names = append(names, m[1])
	}
	for _, want := range []string{"assets_bucket", "cloudfront_distribution_id", "signing_key_secret_arn"} {
		if !slices.Contains(names, want) {
			t.Errorf("docs/aws.md never reads output %s", want)
		}
	}
	for _, n := range names {
		if !strings.Contains(string(outs), `output "`+n+`"`) {
			t.Errorf("docs/aws.md reads output %s, which examples/courses does not declare", n)
		}
	}
}
