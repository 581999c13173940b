package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the spec file; a larger file is refused before parsing.
const MaxFileSize = 1 << 20

// Problem is one thing wrong with a spec: the field it concerns, the line
// where the YAML library places it (0 when unknown), and what is allowed.
type Problem struct {
	Line  int    `json:"line,omitempty"`
	Field string `json:"field"`
	Msg   string `json:"message"`
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Msg
	}
	return p.Field + ": " + p.Msg
}

// Error lists every problem found in a spec file.
type Error struct {
	File     string    `json:"file"`
	Problems []Problem `json:"problems"`
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": " + p.String())
	}
	return b.String()
}

// LoadFile reads and parses a spec file.
func LoadFile(path string) (Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Spec{}, fmt.Errorf("read spec %s: file does not exist (run `haven init` to write a starter spec, or pass -f FILE)", path)
		}
		return Spec{}, fmt.Errorf("read spec %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Spec{}, fmt.Errorf("read spec %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes a spec strictly (an unknown field is an error), fills defaults
// and validates it. The returned error is an *Error naming every problem.
func Parse(data []byte, file string) (Spec, error) {
	if file == "" {
		file = "haven.yaml"
	}
	fail := func(ps ...Problem) (Spec, error) { return Spec{}, &Error{File: file, Problems: ps} }
	if len(data) > MaxFileSize {
		return fail(Problem{Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)})
	}
	s := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // an empty file is the default spec
			s.fillDerived()
			return s, nil
		}
		return fail(Problem{Line: yamlErrLine(err), Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fail(Problem{Line: extra.Line, Msg: "the file holds more than one YAML document; keep one"})
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		s.fillDerived()
		return s, nil
	}
	lines := map[string]int{}
	var ps []Problem
	// check reports every field of the wrong type or unknown, and takes it
	// out of the tree (the field keeps its default), so the rest of the
	// file still decodes and validates: one run names every problem.
	check(root, reflect.TypeOf(s), "", lines, &ps)
	bad := len(ps)
	if err := root.Decode(&s); err != nil {
		return fail(append(ps, Problem{Line: yamlErrLine(err), Msg: strings.TrimPrefix(err.Error(), "yaml: ")})...)
	}
	s.fillDerived()
	for _, p := range s.Validate() {
		// A field reported above holds its default now: what Validate
		// says of it (or of what it holds) would only repeat or mislead.
		if !coveredBy(p.Field, ps[:bad]) {
			p.Line = lineFor(lines, p.Field)
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
		return fail(ps...)
	}
	return s, nil
}

// coveredBy reports whether field is, or is inside, a field of reported.
func coveredBy(field string, reported []Problem) bool {
	for _, r := range reported {
		if r.Field == "(top level)" || field == r.Field || strings.HasPrefix(field, r.Field+".") || strings.HasPrefix(field, r.Field+"[") {
			return true
		}
	}
	return false
}

// drop takes n out of the decoding: a null keeps the field's default.
func drop(n *yaml.Node) {
	n.Kind, n.Tag, n.Value, n.Content, n.Alias = yaml.ScalarNode, "!!null", "", nil, nil
}

// lineFor finds the line of a field, or of its nearest parent that has one.
func lineFor(lines map[string]int, field string) int {
	for f := field; f != ""; {
		if l, ok := lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

func yamlErrLine(err error) int {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(rest[:j])
		return n
	}
	return 0
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// check walks the YAML tree against the Go type, recording each field's line
// and reporting unknown fields, values of the wrong type and numbers that
// are not finite (.nan, .inf) by their path. It removes what it reports
// from the tree, so the tree then decodes.
func check(n *yaml.Node, t reflect.Type, path string, lines map[string]int, ps *[]Problem) {
	if path != "" {
		lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // null keeps the default
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := path
	if name == "" {
		name = "(top level)"
	}
	orig := n
	report := func(line int, field, msg string) {
		*ps = append(*ps, Problem{Line: line, Field: field, Msg: msg})
		drop(orig)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			report(n.Line, name, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			report(n.Line, name, "must be a mapping of fields, got a "+kindName(n.Kind))
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f
			names = append(names, tag)
		}
		sort.Strings(names)
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				*ps = append(*ps, Problem{Line: k.Line, Field: join(path, k.Value), Msg: "unknown field; allowed here: " + strings.Join(names, ", ")})
				continue // left out of the tree
			}
			check(v, f.Type, join(path, k.Value), lines, ps)
			kept = append(kept, k, v)
		}
		n.Content = kept
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			report(n.Line, name, "must be a list, got a "+kindName(n.Kind))
			return
		}
		for i, c := range n.Content {
			check(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			report(n.Line, name, "must be a mapping, got a "+kindName(n.Kind))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), lines, ps)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			report(n.Line, name, "must be a "+scalarName(t)+", got a "+kindName(n.Kind))
			return
		}
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			report(n.Line, name, fmt.Sprintf("must be a %s, got %q", scalarName(t), n.Value))
			return
		}
		if k := t.Kind(); (k == reflect.Float64 || k == reflect.Float32) && !finite(v.Elem().Float()) {
			report(n.Line, name, fmt.Sprintf("must be a finite number, got %q", n.Value))
		}
	}
}

func scalarName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "whole number"
	case reflect.Float64, reflect.Float32:
		return "number"
	case reflect.Bool:
		return "boolean (true or false)"
	}
	return "string"
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
