package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/parity"
	"github.com/haven-platform/haven/internal/spec"
)

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func TestAuditPlanExitCodes(t *testing.T) {
	good := filepath.Join("..", "..", "internal", "posture", "testdata", "good.json")
	out, _, err := run(t, "audit", "plan", good, "--json")
	if err != nil {
		t.Fatalf("audit plan good.json: %v", err)
	}
	var findings []map[string]any
	if err := json.Unmarshal([]byte(out), &findings); err != nil || len(findings) != 0 {
		t.Fatalf("good plan: findings %v, err %v", findings, err)
	}
	bad, _ := filepath.Glob(filepath.Join("..", "..", "internal", "posture", "testdata", "HAVEN-AWS-*.json"))
	if len(bad) == 0 {
		t.Fatal("no rule fixtures found")
	}
	high := 0
	for _, f := range bad {
		out, _, err := run(t, "audit", "plan", f, "--json")
		var fs []struct {
			RuleID   string `json:"rule_id"`
			Severity string `json:"severity"`
		}
		if jerr := json.Unmarshal([]byte(out), &fs); jerr != nil || len(fs) == 0 {
			t.Errorf("%s: no findings (%v)", filepath.Base(f), jerr)
			continue
		}
		wantHigh := false
		for _, x := range fs {
			if !strings.HasPrefix(filepath.Base(f), x.RuleID) {
				t.Errorf("%s: unexpected rule %s fired", filepath.Base(f), x.RuleID)
			}
			wantHigh = wantHigh || x.Severity == "high"
		}
		if wantHigh {
			high++
			if exitCode(err) != 3 {
				t.Errorf("%s: exit code %d, want 3 for a high-severity finding", filepath.Base(f), exitCode(err))
			}
		} else if err != nil {
			t.Errorf("%s: %v without a high-severity finding", filepath.Base(f), err)
		}
	}
	if high == 0 {
		t.Error("no fixture produced a high-severity finding")
	}
}

func TestTfvarsFromRepoSpecWarnsOnClamp(t *testing.T) {
	dir := t.TempDir()
	outFile := filepath.Join(dir, "terraform.tfvars.json")
	out, _, err := run(t, "aws", "tfvars", "-f", filepath.Join("..", "..", "haven.yaml"), "-o", outFile, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Warnings []struct{ Field, From, To string } `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range res.Warnings {
		got[w.Field] = w.From + "→" + w.To
	}
	if got["app.health_check.interval"] != "1s→5s" {
		t.Errorf("warnings = %v, want app.health_check.interval 1s→5s", got)
	}
	data, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	var vars map[string]any
	if err := json.Unmarshal(data, &vars); err != nil {
		t.Fatal(err)
	}
	if vars["min_size"] != 2.0 || vars["max_size"] != 12.0 {
		t.Errorf("min_size=%v max_size=%v", vars["min_size"], vars["max_size"])
	}
}

func TestInitWritesTheStarterSpec(t *testing.T) {
	f := filepath.Join(t.TempDir(), "haven.yaml")
	if _, _, err := run(t, "init", "-f", f); err != nil {
		t.Fatal(err)
	}
	if _, err := spec.LoadFile(f); err != nil {
		t.Fatalf("init wrote an invalid spec: %v", err)
	}
	if _, _, err := run(t, "init", "-f", f); err == nil {
		t.Error("init overwrote an existing file without --force")
	}
	if out, _, err := run(t, "validate", "-f", f, "--json"); err != nil || !strings.Contains(out, `"valid": true`) {
		t.Errorf("validate --json: %v\n%s", err, out)
	}
}

func TestStatusWithoutRegionSaysHowToStart(t *testing.T) {
	_, _, err := run(t, "status", "--state-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "haven up") {
		t.Errorf("status with no region: %v, want advice to run haven up", err)
	}
}

// TestValidateWarnsWhatAWSRefuses: a name valid locally (up to 32
// characters) but over AWS's 20 is valid, with a warning naming the field
// and the limit; the JSON says it does not deploy to AWS.
func TestValidateWarnsWhatAWSRefuses(t *testing.T) {
	f := filepath.Join(t.TempDir(), "haven.yaml")
	name := "exam-week-courses-platform" // 26 characters
	if err := os.WriteFile(f, []byte("name: "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "validate", "-f", f)
	if err != nil {
		t.Fatalf("validate: %v (the spec is valid locally)", err)
	}
	if !strings.Contains(stderr, "name: valid locally, but will not deploy to AWS") || !strings.Contains(stderr, "at most 20 characters") {
		t.Errorf("stderr %q does not warn about the name and AWS's limit", stderr)
	}
	out, _, err := run(t, "validate", "-f", f, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Valid    bool `json:"valid"`
		Deploys  bool `json:"deploys_to_aws"`
		Problems []struct {
			Field, Message string
		} `json:"aws_problems"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Valid || res.Deploys || len(res.Problems) != 1 || res.Problems[0].Field != "name" {
		t.Errorf("validate --json = %+v, want valid, not deployable, one problem on name", res)
	}
	// The repository's spec deploys: no warning.
	_, stderr, err = run(t, "validate", "-f", filepath.Join("..", "..", "haven.yaml"))
	if err != nil || strings.Contains(stderr, "will not deploy") {
		t.Errorf("validate haven.yaml: %v, stderr %q", err, stderr)
	}
}

// TestTfvarsRepoSpecWarningsExplained: every warning `haven aws tfvars`
// prints for the repository's haven.yaml names a field that the README's
// "The same spec on AWS" section explains.
func TestTfvarsRepoSpecWarningsExplained(t *testing.T) {
	_, stderr, err := run(t, "aws", "tfvars", "-f", filepath.Join("..", "..", "haven.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	start := strings.Index(doc, "## The same spec on AWS")
	if start < 0 {
		t.Fatal(`README.md has no "## The same spec on AWS" section`)
	}
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	warned := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		rest, ok := strings.CutPrefix(line, "warning: ")
		if !ok {
			t.Errorf("stderr line %q is not a warning", line)
			continue
		}
		field, _, _ := strings.Cut(rest, ": ")
		warned[field] = true
		if !strings.Contains(section, "`"+field+"`") {
			t.Errorf("README's AWS section does not explain the warning %q", line)
		}
	}
	// And the list is not stale: each spec field a bullet names still warns.
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "- ") {
			continue
		}
		for _, m := range regexp.MustCompile("`([a-z_.]+)`").FindAllStringSubmatch(line, -1) {
			if _, ok := parity.FieldByPath(m[1]); ok && !warned[m[1]] {
				t.Errorf("README explains a warning about %s, which haven aws tfvars no longer gives", m[1])
			}
		}
	}
}

// TestUpRefusesBadStorageSpec: a spec with a bucket name S3 refuses, a
// behaviour aimed at no bucket and a TTL min above its max is refused by
// `haven up` with each problem named, before anything starts: the state
// directory it names is left as it was.
func TestUpRefusesBadStorageSpec(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "haven.yaml")
	bad := `name: exam
objstore:
  buckets:
    - {name: Course_Assets}
edge:
  behaviors:
    - {path: /static/*, target: course-assets}
    - {path: /lb/*, target: lb, min_ttl: 2h, max_ttl: 1h}
`
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "keep"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "up", "-f", f, "--state-dir", state, "--detach")
	if err == nil {
		t.Fatal("haven up accepted a spec with a bad bucket name, an unknown target and min_ttl > max_ttl")
	}
	for _, want := range []string{
		"objstore.buckets[0].name: ", "uppercase",
		`edge.behaviors[0].target: unknown target "course-assets"`,
		"edge.behaviors[1].min_ttl: must be ≤ max_ttl (1h0m0s), got 2h0m0s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("haven up: %v\nwant it to say %q", err, want)
		}
	}
	entries, _ := os.ReadDir(state)
	if b, _ := os.ReadFile(filepath.Join(state, "keep")); len(entries) != 1 || string(b) != "kept" {
		t.Errorf("the state dir after a refused spec holds %d entries (keep = %q), want it as it was", len(entries), b)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{"10m": now.Add(-10 * time.Minute), "0s": now, "2026-11-30T06:00:00Z": now.Add(-time.Hour)} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "10"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("parseSince(%q): %v, want an error naming --since", bad, err)
		}
	}
}

func TestVersionAndLogsUsage(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "haven ") {
		t.Errorf("haven version: %q %v", out, err)
	}
	_, _, err = run(t, "logs", "nginx", "--state-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "the targets are daemon, lb") {
		t.Errorf("haven logs nginx: %v", err)
	}
}
