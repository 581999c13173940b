package posture

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// planDoc is the part of `terraform show -json` output the rules read.
type planDoc struct {
	FormatVersion string `json:"format_version"`
	PlannedValues *struct {
		RootModule planModule `json:"root_module"`
	} `json:"planned_values"`
	Configuration struct {
		RootModule configModule `json:"root_module"`
	} `json:"configuration"`
}

type planModule struct {
	Address      string         `json:"address"`
	Resources    []planResource `json:"resources"`
	ChildModules []planModule   `json:"child_modules"`
}

type planResource struct {
	Address string         `json:"address"`
	Mode    string         `json:"mode"`
	Type    string         `json:"type"`
	Name    string         `json:"name"`
	Values  map[string]any `json:"values"`
}

type configModule struct {
	Resources   []configResource `json:"resources"`
	ModuleCalls map[string]struct {
		Module configModule `json:"module"`
	} `json:"module_calls"`
}

type configResource struct {
	Address     string         `json:"address"`
	Mode        string         `json:"mode"`
	Type        string         `json:"type"`
	Expressions map[string]any `json:"expressions"`
}

// resource is one planned resource joined with its configuration.
type resource struct {
	Address string         // full address, with module path and index
	Key     string         // full address without indexes: joins plan and configuration
	Module  string         // module path prefix without indexes, "" or "module.x."
	Mode    string         // "managed" or "data"
	Type    string         // e.g. "aws_db_instance"
	Values  map[string]any // planned values; unknown values are absent
	Exprs   map[string]any // configuration expressions, nil if absent
}

// inventory indexes a plan's resources for the rules.
type inventory struct {
	all    []*resource
	byKey  map[string][]*resource
	byType map[string][]*resource
}

var indexRe = regexp.MustCompile(`\[[^\]]*\]`)

func stripIndexes(addr string) string { return indexRe.ReplaceAllString(addr, "") }

func parsePlan(data []byte) (*inventory, error) {
	var doc planDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse plan JSON: %w", err)
	}
	if doc.FormatVersion == "" || doc.PlannedValues == nil {
		return nil, fmt.Errorf("parse plan JSON: no format_version or planned_values; pass the output of `terraform show -json PLANFILE`")
	}
	configs := map[string]map[string]any{}
	var walkConfig func(prefix string, m configModule)
	walkConfig = func(prefix string, m configModule) {
		for _, r := range m.Resources {
			configs[prefix+r.Address] = r.Expressions
		}
		for name, call := range m.ModuleCalls {
			walkConfig(prefix+"module."+name+".", call.Module)
		}
	}
	walkConfig("", doc.Configuration.RootModule)

	inv := &inventory{byKey: map[string][]*resource{}, byType: map[string][]*resource{}}
	var walk func(m planModule)
	walk = func(m planModule) {
		for _, pr := range m.Resources {
			key := stripIndexes(pr.Address)
			mod := ""
			if i := strings.LastIndex(key, "module."); i >= 0 {
				rest := key[i+len("module."):]
				if j := strings.Index(rest, "."); j >= 0 {
					mod = key[:i+len("module.")+j+1]
				}
			}
			values := pr.Values
			if values == nil {
				values = map[string]any{}
			}
			r := &resource{Address: pr.Address, Key: key, Module: mod, Mode: pr.Mode, Type: pr.Type, Values: values, Exprs: configs[key]}
			inv.all = append(inv.all, r)
			inv.byKey[key] = append(inv.byKey[key], r)
			if pr.Mode != "data" {
				inv.byType[pr.Type] = append(inv.byType[pr.Type], r)
			}
		}
		for _, c := range m.ChildModules {
			walk(c)
		}
	}
	walk(doc.PlannedValues.RootModule)
	return inv, nil
}

// data returns the data resources of type typ.
func (inv *inventory) data(typ string) []*resource {
	var out []*resource
	for _, r := range inv.all {
		if r.Mode == "data" && r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// refs returns the configuration references of attr on r, resolved to
// resource keys in r's module ("module.m.aws_s3_bucket.b").
func (r *resource) refs(attr string) []string {
	expr, ok := r.Exprs[attr].(map[string]any)
	if !ok {
		return nil
	}
	raw, _ := expr["references"].([]any)
	var out []string
	seen := map[string]bool{}
	for _, x := range raw {
		s, _ := x.(string)
		parts := strings.Split(stripIndexes(s), ".")
		n := 2
		if parts[0] == "data" {
			n = 3
		}
		if parts[0] == "var" || parts[0] == "local" || parts[0] == "module" || len(parts) < n {
			continue
		}
		key := r.Module + strings.Join(parts[:n], ".")
		if !seen[key] {
			seen[key] = true
			out = append(out, key)
		}
	}
	return out
}

// hasExpr reports whether attr is set in r's configuration.
func (r *resource) hasExpr(attr string) bool {
	_, ok := r.Exprs[attr]
	return ok
}

// linked reports whether r's attr points at target, by configuration
// reference or, when both are known, by equal planned values.
func (r *resource) linked(attr string, target *resource, targetAttr string) bool {
	for _, k := range r.refs(attr) {
		if k == target.Key {
			return true
		}
	}
	a, aok := r.Values[attr].(string)
	b, bok := target.Values[targetAttr].(string)
	return aok && bok && a != "" && a == b
}

// linkedAny is linked for list attributes such as security_groups.
func (r *resource) linkedAny(attr string, target *resource, targetAttr string) bool {
	for _, k := range r.refs(attr) {
		if k == target.Key {
			return true
		}
	}
	b, ok := target.Values[targetAttr].(string)
	if !ok || b == "" {
		return false
	}
	for _, s := range strings_(r.Values[attr]) {
		if s == b {
			return true
		}
	}
	return false
}

func str(v any) string { s, _ := v.(string); return s }

func boolean(v any) (value, known bool) { b, ok := v.(bool); return b, ok }

func number(v any) (float64, bool) { f, ok := v.(float64); return f, ok }

// strings_ turns a JSON string or list of strings into a slice.
func strings_(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// blocks returns a nested block list (Terraform JSON encodes blocks as lists of objects).
func blocks(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
