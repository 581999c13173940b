package spec

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestNonFiniteNumbersAreRefused(t *testing.T) {
	for _, tc := range []struct{ in, field string }{
		{"app: {instance: {cpu: .nan}}\n", "app.instance.cpu"},
		{"app: {instance: {cpu: .NaN}}\n", "app.instance.cpu"},
		{"app: {instance: {cpu: .inf}}\n", "app.instance.cpu"},
		{"app: {instance: {cpu: -.Inf}}\n", "app.instance.cpu"},
		{"fleet:\n  scaling:\n    - {target_tracking: cpu, target: .nan}\n", "fleet.scaling[0].target"},
	} {
		_, err := Parse([]byte(tc.in), "h.yaml")
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a *spec.Error", tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.field+": must be a finite number") {
			t.Errorf("Parse(%q): %v; want %s named as not finite", tc.in, err, tc.field)
		}
	}
	for _, in := range []string{"nanMiB", "NaNGiB", "infMiB", "+InfKB"} {
		if b, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, b)
		}
	}
}

// Validate, not only Parse, refuses NaN and ±Inf in every float field of
// the spec, whichever it is, and names it.
func TestValidateRefusesNonFiniteInEveryFloatField(t *testing.T) {
	base, err := Parse([]byte("fleet:\n  scaling:\n    - {target_tracking: cpu, target: 50}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(v reflect.Value, path string, set func(reflect.Value))
	walk = func(v reflect.Value, path string, set func(reflect.Value)) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				name := strings.Split(f.Tag.Get("yaml"), ",")[0]
				if name == "-" || !f.IsExported() {
					continue
				}
				walk(v.Field(i), join(path, name), set)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path+"["+string(rune('0'+i))+"]", set)
			}
		case reflect.Float64, reflect.Float32:
			paths = append(paths, path)
			set(v)
		}
	}
	walk(reflect.ValueOf(&base).Elem(), "", func(reflect.Value) {})
	if len(paths) < 2 {
		t.Fatalf("found float fields %v; the walk is broken", paths)
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, target := range paths {
			s := base
			s.Fleet.Scaling = append([]ScalingPolicy(nil), base.Fleet.Scaling...)
			setField(t, &s, target, bad)
			ps := s.Validate()
			found := false
			for _, p := range ps {
				if p.Field == target {
					found = true
				}
			}
			if !found {
				t.Errorf("%s = %v: Validate says %v, want the field named", target, bad, ps)
			}
		}
	}
}

// setField sets the float field at a YAML path such as app.instance.cpu or
// fleet.scaling[0].target.
func setField(t *testing.T, s *Spec, path string, f float64) {
	t.Helper()
	v := reflect.ValueOf(s).Elem()
	for _, part := range strings.Split(path, ".") {
		idx := -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			idx = int(part[i+1] - '0')
			part = part[:i]
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0] == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			t.Fatalf("no field %s in %s", part, path)
		}
		if idx >= 0 {
			v = v.Index(idx)
		}
	}
	v.SetFloat(f)
}

// A file with a field of the wrong type, an unknown field and a value out
// of range gets all three named in one run, each with its line.
func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	in := "app:\n  instance: {cpu: .nan}\nfleet:\n  min: 3\n  max: 2\n  mni: 1\nload_balancer: {algorithm: random}\ndatabase: {durability: 5d, backup_retention: lots}\n"
	_, err := Parse([]byte(in), "h.yaml")
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *spec.Error", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"h.yaml:2: app.instance.cpu: must be a finite number",
		"h.yaml:5: fleet.max: must be ≥ fleet.min",
		"h.yaml:6: fleet.mni: unknown field",
		"h.yaml:7: load_balancer.algorithm:",
		"h.yaml:8: database.durability:",
		"h.yaml:8: database.backup_retention:",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %q:\n%s", want, msg)
		}
	}
	// A field reported for its type is not reported again by Validate.
	if n := strings.Count(msg, "app.instance.cpu"); n != 1 {
		t.Errorf("app.instance.cpu reported %d times:\n%s", n, msg)
	}
}
