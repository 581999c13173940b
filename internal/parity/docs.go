package parity

//go:generate go run ./gendocs -root ../..

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/haven-platform/haven/internal/spec"
)

// A generated section of a doc sits between these two lines, with the
// section's name: <!-- BEGIN generated: fields … --> … <!-- END generated: fields -->.
const (
	beginMark = "<!-- BEGIN generated: %s (go generate ./internal/parity, from internal/parity/fields.go; do not edit by hand) -->"
	endMark   = "<!-- END generated: %s -->"
)

// Section is a generated part of a doc.
type Section struct {
	// File is the doc's path from the repository root.
	File string
	// Name tells the section apart from others in the same file.
	Name string
	// Render returns the section's text.
	Render func() string
}

// Sections are the tables generated from Fields and Capabilities.
var Sections = []Section{
	{File: "docs/spec.md", Name: "fields", Render: FieldTable},
	{File: "docs/aws.md", Name: "parity", Render: ParityTable},
}

// FieldTable is docs/spec.md's table: one row per leaf field with its
// default, what the spec allows, what the local region does, and what AWS
// does.
func FieldTable() string {
	def, err := spec.Parse(nil, "")
	if err != nil {
		panic(fmt.Sprintf("parse the empty spec: %v", err)) // the defaults are valid; spec tests prove it
	}
	var b strings.Builder
	b.WriteString("| field | default | allowed | local (`haven up`, today) | AWS (`haven aws tfvars`) |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, f := range Fields {
		d := f.Default
		if d == "" {
			d = Value(def, f.Path)
			if d != "none" && d != "empty" {
				d = "`" + d + "`"
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.Path, cell(d), cell(f.Allowed), cell(localOf(f)), cell(awsOf(f)))
	}
	return b.String()
}

// localOf is what the local region does with f today.
func localOf(f Field) string {
	c, _ := CapabilityByName(f.Capability)
	l := f.Local
	if l == "" {
		l = c.Local
	}
	if !c.LocalBuilt {
		l = "**not acted on yet** (`haven up` warns): " + l
	}
	return l
}

// awsOf is what `haven aws tfvars` does with f.
func awsOf(f Field) string {
	switch f.Kind {
	case Exported:
		return "`" + f.Variable + "`: " + f.AWS
	case LocalOnly:
		return "local only: " + f.Reason
	case NotOnAWS:
		return "**not on AWS yet** (warning): " + f.Reason
	case Fixed:
		return "fixed: " + f.AWS
	}
	return ""
}

// ParityTable is docs/aws.md's table: one row per capability with its spec
// fields, what the local region does today, the Terraform variables and the
// AWS resources.
func ParityTable() string {
	var b strings.Builder
	b.WriteString("| capability | spec fields | local (`haven up`, today) | Terraform variables | AWS resources |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, c := range Capabilities {
		var fields, vars, notes []string
		seen := map[string]bool{}
		for _, f := range Fields {
			if f.Capability != c.Name {
				continue
			}
			fields = append(fields, "`"+f.Path+"`")
			switch f.Kind {
			case Exported:
				root := strings.Split(strings.Split(f.Variable, ".")[0], "[")[0]
				if !seen[root] {
					seen[root] = true
					vars = append(vars, "`"+root+"`")
				}
			case NotOnAWS:
				notes = append(notes, "`"+f.Path+"` not on AWS yet (warning)")
			case LocalOnly:
				notes = append(notes, "`"+f.Path+"` local only")
			}
		}
		local := c.Local
		if !c.LocalBuilt {
			local = "**not built yet**: " + local
		}
		v := strings.Join(vars, ", ")
		if len(notes) > 0 {
			if v != "" {
				v += "; "
			}
			v += strings.Join(notes, "; ")
		}
		if v == "" {
			v = "—"
		}
		f := strings.Join(fields, ", ")
		if f == "" {
			f = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", c.Name, f, cell(local), cell(v), cell(c.AWS))
	}
	return b.String()
}

// cell escapes the text of a table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// Splice returns doc with the named generated section replaced by body; it
// fails when the markers are missing or out of order.
func Splice(doc, name, body string) (string, error) {
	begin, end := fmt.Sprintf(beginMark, name), fmt.Sprintf(endMark, name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("splice section %s: the doc lacks the lines\n%s\n%s\n(add them where the table belongs)", name, begin, end)
	}
	return doc[:i] + begin + "\n" + body + doc[j:], nil
}

// Generated returns the generated section name of doc, as it is in the file.
func Generated(doc, name string) (string, error) {
	begin, end := fmt.Sprintf(beginMark, name), fmt.Sprintf(endMark, name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("read section %s: markers missing", name)
	}
	return strings.TrimPrefix(doc[i+len(begin):j], "\n"), nil
}

// WriteDocs rewrites every generated section under root, the repository.
func WriteDocs(root string) error {
	for _, s := range Sections {
		p := filepath.Join(root, s.File)
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", s.File, err)
		}
		out, err := Splice(string(b), s.Name, s.Render())
		if err != nil {
			return fmt.Errorf("%s: %w", s.File, err)
		}
		if out != string(b) {
			if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", s.File, err)
			}
		}
	}
	return nil
}
