// Package parity records, for every leaf field of haven.yaml, what it means on each target: the one table that `haven aws tfvars`, `haven up`'s warnings, `haven validate` and the docs' field tables are built from.
package parity

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/haven-platform/haven/internal/spec"
)

// Kind says what `haven aws tfvars` does with a field.
type Kind int

const (
	// Exported fields become a Terraform variable (Field.Variable), clamped
	// to the range AWS accepts; a clamp prints a warning naming the field.
	Exported Kind = iota + 1
	// LocalOnly fields have no AWS counterpart by design (Field.Reason says
	// why): a listen address on this machine, a cgroup size. Never warned
	// about.
	LocalOnly
	// NotOnAWS fields mean something the module cannot do yet. When the
	// spec sets one to anything but its default (which is what AWS does),
	// `haven aws tfvars` prints Field.Reason as a warning naming the field.
	NotOnAWS
	// Fixed fields accept exactly one value, the one the module builds
	// (Field.AWS). When the spec starts to accept another, the field must
	// become Exported: TestFixedFieldsAcceptOneValue fails until it does.
	Fixed
)

func (k Kind) String() string {
	switch k {
	case Exported:
		return "exported"
	case LocalOnly:
		return "local only"
	case NotOnAWS:
		return "not on AWS yet"
	case Fixed:
		return "fixed"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Field is the decision for one leaf field of haven.yaml.
type Field struct {
	// Path is the field's YAML path, e.g. "app.health_check.interval"; "[]"
	// stands for every element of a list: "fleet.scaling[].target".
	Path string
	// Kind says what `haven aws tfvars` does with it.
	Kind Kind
	// Capability is the Name of the Capabilities row the field belongs to.
	Capability string
	// Allowed is what the spec accepts, for docs/spec.md.
	Allowed string
	// Default replaces the default docs/spec.md shows, for a default that
	// is derived from other fields or belongs to a list element. Empty: the
	// value in spec.Default, filled as `haven validate` fills it.
	Default string
	// Local says what the local region does with the field today; empty
	// means the capability's Local says it. Only what the code does.
	Local string
	// Variable is the Terraform variable of an Exported field, as a path
	// into the tfvars JSON: "health_check.interval",
	// "target_tracking[].warmup".
	Variable string
	// AWS says what AWS does with the field: for Exported, the conversion
	// and the clamping; for Fixed, what the module builds.
	AWS string
	// Reason is, for LocalOnly, why AWS has no counterpart; for NotOnAWS,
	// the warning `haven aws tfvars` prints when the field is set.
	Reason string
	// WarnedBy is, for a NotOnAWS field that is never set without another
	// (a custom alarm's metric goes with its name), the path of that
	// field: its one warning covers both. Empty: the field warns itself.
	WarnedBy string
	// Example is a haven.yaml document that sets the field to a valid value
	// other than its default (for Fixed: a value the spec refuses). Tests
	// deploy it with the real tfvars generation.
	Example string
	// Want is the JSON value Variable holds when Example is deployed, after
	// clamping (Exported only).
	Want string
}

// Capability is one row of the parity table in docs/aws.md: a thing the
// architecture does, what the local region does for it today, and what the
// Terraform module builds.
type Capability struct {
	// Name identifies the row; Field.Capability refers to it.
	Name string
	// Local says what `haven up` does for it today, and nothing more. When
	// a capability lands locally, change this text and set LocalBuilt.
	Local string
	// LocalBuilt is false while the local region does not act on the
	// capability: `haven up` then warns about each of its fields the spec
	// sets (LocalWarnings).
	LocalBuilt bool
	// AWS names the resources the module builds for it.
	AWS string
}

// FieldByPath returns the classification of path, and whether there is one.
func FieldByPath(path string) (Field, bool) {
	for _, f := range Fields {
		if f.Path == path {
			return f, true
		}
	}
	return Field{}, false
}

// CapabilityByName returns the capability called name, and whether there is one.
func CapabilityByName(name string) (Capability, bool) {
	for _, c := range Capabilities {
		if c.Name == name {
			return c, true
		}
	}
	return Capability{}, false
}

// Leaf is one leaf field of the spec: a value haven.yaml sets as a whole (a
// scalar, a list of scalars, a map, or a type that parses itself, such as
// spec.Duration).
type Leaf struct {
	// Path is the YAML path, with "[]" for list elements.
	Path string
	// Type is the Go type of the field.
	Type reflect.Type
	// GoPath is the field's Go selector from spec.Spec, e.g.
	// "App.HealthCheck.Interval", for error messages.
	GoPath string
}

var unmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// Leaves walks spec.Spec by reflection and returns every leaf field, in the
// order of the struct tree.
func Leaves() []Leaf {
	var out []Leaf
	walk(reflect.TypeOf(spec.Spec{}), "", "", &out)
	return out
}

func walk(t reflect.Type, path, goPath string, out *[]Leaf) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, inline := yamlName(sf)
		if name == "-" {
			continue
		}
		p, gp := join(path, name), join(goPath, sf.Name)
		if inline {
			p = path
		}
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && !parsesItself(ft):
			walk(ft, p, gp, out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !parsesItself(ft.Elem()):
			walk(ft.Elem(), p+"[]", gp+"[]", out)
		default:
			*out = append(*out, Leaf{Path: p, Type: sf.Type, GoPath: gp})
		}
	}
}

func parsesItself(t reflect.Type) bool {
	return t.Implements(unmarshaler) || reflect.PointerTo(t).Implements(unmarshaler)
}

func yamlName(sf reflect.StructField) (name string, inline bool) {
	tag := sf.Tag.Get("yaml")
	parts := strings.Split(tag, ",")
	for _, o := range parts[1:] {
		if o == "inline" {
			return "", true
		}
	}
	if parts[0] == "" {
		return strings.ToLower(sf.Name), false
	}
	return parts[0], false
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// values returns the values at path in s: one for a plain path, one per
// list element for a path with "[]" (none for an empty list).
func values(s *spec.Spec, path string) []reflect.Value {
	cur := []reflect.Value{reflect.ValueOf(s).Elem()}
	for _, seg := range strings.Split(path, ".") {
		list := strings.HasSuffix(seg, "[]")
		seg = strings.TrimSuffix(seg, "[]")
		var next []reflect.Value
		for _, v := range cur {
			if v.Kind() == reflect.Pointer {
				if v.IsNil() {
					continue // an optional section left out (alarms.actions[].webhook)
				}
				v = v.Elem()
			}
			f, ok := fieldByYAML(v, seg)
			if !ok {
				return nil
			}
			for f.Kind() == reflect.Pointer && !f.IsNil() && f.Elem().Kind() == reflect.Struct {
				f = f.Elem()
			}
			if list {
				for i := 0; i < f.Len(); i++ {
					next = append(next, f.Index(i))
				}
			} else {
				next = append(next, f)
			}
		}
		cur = next
	}
	return cur
}

func fieldByYAML(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		if n, _ := yamlName(sf); n == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// IsSet reports whether s sets the field at path to something other than
// its default: for a list element's field, whether any element has a
// non-zero value there.
func IsSet(s spec.Spec, path string) bool {
	got := values(&s, path)
	if strings.Contains(path, "[]") {
		for _, v := range got {
			if !v.IsZero() {
				return true
			}
		}
		return false
	}
	d := spec.Default()
	def := values(&d, path)
	if len(got) != 1 || len(def) != 1 {
		return false
	}
	return Show(got[0].Interface()) != Show(def[0].Interface()) // [] and an absent list are both "none"
}

// Value renders the value of the field at path in s for a message: the
// spec's own notation (10s, 256MiB, [a, b]); list elements are joined.
func Value(s spec.Spec, path string) string {
	var parts []string
	for _, v := range values(&s, path) {
		parts = append(parts, Show(v.Interface()))
	}
	return strings.Join(parts, ", ")
}

// Values returns the Go values at path in s: one for a plain path, one per
// list element for a path with "[]".
func Values(s spec.Spec, path string) []any {
	var out []any
	for _, v := range values(&s, path) {
		out = append(out, v.Interface())
	}
	return out
}

// Show formats a spec value in haven.yaml's notation.
func Show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return string(b)
	}
	return show(x)
}

func show(x any) string {
	switch t := x.(type) {
	case nil:
		return "none"
	case string:
		if t == "" {
			return "empty"
		}
		return t
	case []any:
		if len(t) == 0 {
			return "none"
		}
		var parts []string
		for _, e := range t {
			parts = append(parts, show(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		if len(t) == 0 {
			return "none"
		}
		b, _ := json.Marshal(t) // sorted keys
		return string(b)
	}
	return fmt.Sprint(x)
}

// Unsupported is a field the spec sets that the module cannot deploy yet.
type Unsupported struct {
	// Field is the spec path, e.g. "database.durability".
	Field string
	// Value is the value the spec sets.
	Value string
	// Reason is the field's warning text.
	Reason string
}

// AWSWarnings returns one entry per NotOnAWS field that s sets: what
// `haven aws tfvars` warns about beyond clamping.
func AWSWarnings(s spec.Spec) []Unsupported {
	var out []Unsupported
	for _, f := range Fields {
		if f.Kind == NotOnAWS && f.WarnedBy == "" && IsSet(s, f.Path) {
			out = append(out, Unsupported{Field: f.Path, Value: Value(s, f.Path), Reason: f.Reason})
		}
	}
	return out
}

// LocalWarnings returns what `haven up` should say about s: one line per
// capability the local region does not act on yet whose fields s sets,
// naming those fields.
func LocalWarnings(s spec.Spec) []string {
	var out []string
	for _, c := range Capabilities {
		if c.LocalBuilt {
			continue
		}
		var set []string
		for _, f := range Fields {
			if f.Capability == c.Name && f.Kind != Fixed && IsSet(s, f.Path) {
				set = append(set, f.Path)
			}
		}
		if len(set) > 0 {
			out = append(out, fmt.Sprintf("%s: %s is not acted on locally yet: %s", strings.Join(set, ", "), c.Name, c.Local))
		}
	}
	return out
}
