package parity

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haven-platform/haven/internal/spec"
)

// TestEveryLeafClassified walks spec.Spec by reflection: every leaf field
// must have exactly one row in Fields, and every row must name a leaf that
// exists. Adding a field to the spec without deciding what it means on AWS
// fails here, with the row to add.
func TestEveryLeafClassified(t *testing.T) {
	leaves := Leaves()
	if len(leaves) < 40 {
		t.Fatalf("found only %d leaves in spec.Spec; is the walk broken?", len(leaves))
	}
	byPath := map[string]Leaf{}
	for _, l := range leaves {
		byPath[l.Path] = l
		if _, ok := FieldByPath(l.Path); !ok {
			t.Errorf("%s", missingRow(l))
		}
	}
	seen := map[string]bool{}
	for _, f := range Fields {
		if seen[f.Path] {
			t.Errorf("internal/parity/fields.go: %q has two rows in Fields; keep one", f.Path)
		}
		seen[f.Path] = true
		if _, ok := byPath[f.Path]; !ok {
			t.Errorf("internal/parity/fields.go: the row for %q names no leaf field of spec.Spec (renamed or removed?); leaves are %v", f.Path, paths(leaves))
		}
	}
}

// missingRow is the failure message for an unclassified leaf: what to add,
// where, and what each kind needs.
func missingRow(l Leaf) string {
	top := strings.SplitN(strings.TrimSuffix(l.Path, "[]"), ".", 2)[0]
	return fmt.Sprintf(`spec field %s (Go: spec.Spec.%s, type %s) has no decision for AWS.
Add a row to Fields in internal/parity/fields.go (in the order of internal/spec/spec.go), e.g.
	{
		Path: %q, Kind: LocalOnly, Capability: "<the Name in Capabilities of the other %s fields>",
		Allowed: "<what the spec accepts>", Local: "<what haven up does with it today>",
		Reason:  "<why AWS has no counterpart>",
		Example: "<a haven.yaml document setting it to a valid non-default value>",
	},
and pick its Kind:
	Exported:  the module takes it. Set Variable (the tfvars JSON path), AWS (conversion and clamping), Example and Want
	           (the variable's JSON value for Example); map it in internal/tfvars (Input, FromSpec, Generate, Vars) and the module.
	LocalOnly: it has no AWS meaning by design. Set Reason.
	NotOnAWS:  AWS cannot do it yet. Set Reason: the warning haven aws tfvars prints when the spec sets it.
	Fixed:     the spec accepts only what the module builds. Set AWS.
Then run: go generate ./internal/parity   (rewrites the tables in docs/spec.md and docs/aws.md)`,
		l.Path, l.GoPath, l.Type, l.Path, top)
}

func paths(ls []Leaf) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Path)
	}
	return out
}

// TestRowsComplete: each row carries what its kind needs, and names a
// capability that exists.
func TestRowsComplete(t *testing.T) {
	for _, f := range Fields {
		bad := func(format string, a ...any) {
			t.Errorf("internal/parity/fields.go: %s (%s): %s", f.Path, f.Kind, fmt.Sprintf(format, a...))
		}
		if _, ok := CapabilityByName(f.Capability); !ok {
			bad("Capability %q is not a Name in Capabilities", f.Capability)
		}
		if f.Allowed == "" {
			bad("set Allowed: what the spec accepts")
		}
		if f.Example == "" {
			bad("set Example: a haven.yaml document setting the field")
		}
		switch f.Kind {
		case Exported:
			if f.Variable == "" || f.AWS == "" || f.Want == "" {
				bad("an exported field needs Variable, AWS and Want")
			}
			if f.Reason != "" {
				bad("Reason is for local-only and not-on-AWS fields; put the conversion in AWS")
			}
		case LocalOnly, NotOnAWS:
			if f.Reason == "" {
				bad("set Reason")
			}
			if f.Variable != "" || f.Want != "" {
				bad("only exported fields have a Variable")
			}
		case Fixed:
			if f.AWS == "" {
				bad("set AWS: what the module builds")
			}
		default:
			bad("Kind must be Exported, LocalOnly, NotOnAWS or Fixed")
		}
		if f.WarnedBy != "" {
			by, ok := FieldByPath(f.WarnedBy)
			switch {
			case f.Kind != NotOnAWS:
				bad("WarnedBy is for not-on-AWS fields")
			case !ok || by.Kind != NotOnAWS || by.WarnedBy != "" || by.Reason != f.Reason:
				bad("WarnedBy %q must be a not-on-AWS field that warns itself, with the same Reason", f.WarnedBy)
			}
		}
		if strings.Contains(f.Path, "[]") != strings.Contains(f.Variable, "[]") && f.Variable != "" {
			bad("a list element's field maps to a list element's variable (Variable %q)", f.Variable)
		}
	}
	names := map[string]bool{}
	for _, c := range Capabilities {
		if names[c.Name] {
			t.Errorf("capability %q is listed twice", c.Name)
		}
		names[c.Name] = true
		if c.Local == "" || c.AWS == "" {
			t.Errorf("capability %q needs Local and AWS", c.Name)
		}
	}
}

// TestExamplesParse: every example is a valid spec (a Fixed field's is
// refused, naming the field), and sets its field.
func TestExamplesParse(t *testing.T) {
	for _, f := range Fields {
		s, err := spec.Parse([]byte(f.Example), "example.yaml")
		if f.Kind == Fixed {
			if err == nil || !strings.Contains(err.Error(), f.Path+":") {
				t.Errorf("%s is Fixed, but the spec accepts %q (err %v): the spec now takes another value, so export it (Kind Exported, Variable, Want) and map it in internal/tfvars", f.Path, f.Example, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Example %q does not parse: %v", f.Path, f.Example, err)
			continue
		}
		if !IsSet(s, f.Path) && !strings.HasPrefix(f.Path, "database.name") && !strings.HasPrefix(f.Path, "database.user") && f.Path != "aws.availability_zones" {
			t.Errorf("%s: Example %q leaves the field at its default", f.Path, f.Example)
		}
	}
}

func TestIsSetAndValue(t *testing.T) {
	s, err := spec.Parse([]byte("database: {durability: required}\nfleet: {scaling: [{scheduled: a, cron: '@daily', min: 1}, {target_tracking: cpu, target: 40}]}"), "")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"database.durability":             true,
		"database.backup_schedule":        false,
		"objstore.max_upload":             false,
		"fleet.scaling[].scheduled":       true,
		"fleet.scaling[].target_tracking": true,
		"fleet.scaling[].desired":         false,
	} {
		if got := IsSet(s, path); got != want {
			t.Errorf("IsSet(%s) = %v, want %v", path, got, want)
		}
	}
	if got := Value(s, "fleet.scaling[].target"); got != "0, 40" {
		t.Errorf("Value(fleet.scaling[].target) = %q", got)
	}
	if s2, _ := spec.Parse([]byte("app: {release: []}"), ""); IsSet(s2, "app.release") {
		t.Error("release: [] counts as set; it is the default, none")
	}
	if got := Value(s, "zones"); got != "[a, b]" {
		t.Errorf("Value(zones) = %q", got)
	}
}

// TestAWSWarningsNameTheField: a not-on-AWS field set in the spec gives a
// warning naming it; left at its default, none.
func TestAWSWarningsNameTheField(t *testing.T) {
	if ws := AWSWarnings(spec.Default()); len(ws) != 0 {
		t.Errorf("the default spec warns: %v", ws)
	}
	for _, f := range Fields {
		if f.Kind != NotOnAWS {
			continue
		}
		s, err := spec.Parse([]byte(f.Example), "")
		if err != nil {
			t.Fatal(err)
		}
		// One warning names the field (or the field whose warning covers
		// it); any other is for a field of the same section the example
		// must set too (a custom alarm that names an action defines it).
		want := f.Path
		if f.WarnedBy != "" {
			want = f.WarnedBy
		}
		section, _, _ := strings.Cut(f.Path, ".")
		named := 0
		for _, w := range AWSWarnings(s) {
			switch {
			case w.Field == want && w.Reason == f.Reason && w.Value != "":
				named++
			case !strings.HasPrefix(w.Field, section+".") || w.Field == f.Path:
				t.Errorf("%s set to %q: unrelated warning %+v", f.Path, f.Example, w)
			}
		}
		if named != 1 {
			t.Errorf("%s set to %q: %d warnings name %s, want one", f.Path, f.Example, named, want)
		}
	}
}

// TestLocalWarnings: a spec setting fields of a capability the local region
// does not act on yet gets one warning per capability naming the fields.
func TestLocalWarnings(t *testing.T) {
	if ws := LocalWarnings(spec.Default()); len(ws) != 0 {
		t.Errorf("the default spec warns locally: %v", ws)
	}
	// Target tracking and scheduled actions are acted on (issue 10), and
	// so is the edge (issue 13): no warning.
	s, err := spec.Parse([]byte("fleet: {scaling: [{scheduled: exam, cron: '0 7 * * 1-5', min: 6}, {target_tracking: cpu, target: 50}]}\nedge: {listen: '127.0.0.1:9444'}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if ws := LocalWarnings(s); len(ws) != 0 {
		t.Errorf("warnings %q for scaling and the edge, both built locally; want none", ws)
	}
}

// TestDocsTablesMatch: the tables in docs/spec.md and docs/aws.md are the
// ones the classification renders today.
func TestDocsTablesMatch(t *testing.T) {
	for _, s := range Sections {
		b, err := os.ReadFile(filepath.Join("..", "..", s.File))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Generated(string(b), s.Name)
		if err != nil {
			t.Fatalf("%s: %v", s.File, err)
		}
		if want := s.Render(); got != want {
			t.Errorf("%s: the %s table differs from internal/parity/fields.go; run `go generate ./internal/parity`\ngot:\n%s\nwant:\n%s", s.File, s.Name, got, want)
		}
	}
}

// TestTablesCoverEveryFieldAndCapability: each field is a row of the field
// table, and each capability a row of the parity table naming its fields.
func TestTablesCoverEveryFieldAndCapability(t *testing.T) {
	ft, pt := FieldTable(), ParityTable()
	for _, f := range Fields {
		if !strings.Contains(ft, "| `"+f.Path+"` |") {
			t.Errorf("field table lacks %s", f.Path)
		}
		if !strings.Contains(pt, "`"+f.Path+"`") {
			t.Errorf("parity table lacks %s", f.Path)
		}
	}
	for _, c := range Capabilities {
		if !strings.Contains(pt, "\n| "+c.Name+" |") {
			t.Errorf("parity table lacks %s", c.Name)
		}
	}
}
