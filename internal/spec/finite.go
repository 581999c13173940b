package spec

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
)

// finite reports whether f is a number: neither NaN nor ±Inf. NaN slips
// past every range check (each comparison with it is false), so each float
// field is checked for it by name.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// validateFinite reports every float field of v (a spec struct) that is
// NaN or infinite, by its YAML path under prefix (once: a field already
// reported, by a range check that caught an infinity, is not repeated).
func validateFinite(ps *problems, v reflect.Value, prefix string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			validateFinite(ps, v.Elem(), prefix)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if name == "-" || !t.Field(i).IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(t.Field(i).Name)
			}
			validateFinite(ps, v.Field(i), join(prefix, name))
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			validateFinite(ps, v.Index(i), fmt.Sprintf("%s[%d]", prefix, i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			validateFinite(ps, v.MapIndex(k), join(prefix, fmt.Sprint(k.Interface())))
		}
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); !finite(f) && !slices.ContainsFunc(*ps, func(p Problem) bool { return p.Field == prefix }) {
			ps.add(prefix, "must be a finite number, got %v", f)
		}
	}
}
