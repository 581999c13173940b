package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/workload/courses"
)

// workloads are the drill workloads the CLI knows, by name. The drills
// themselves know only the drill.Workload interface.
var workloads = map[string]func(password string) drill.Workload{
	"courses": func(pw string) drill.Workload { return courses.Workload{Password: pw} },
}

// workloadFlags are the flags that pick a drill's workload.
type workloadFlags struct {
	name, password string
}

func (w *workloadFlags) add(f *pflag.FlagSet) {
	var names []string
	for n := range workloads {
		names = append(names, n)
	}
	sort.Strings(names)
	f.StringVar(&w.name, "workload", "courses", "what the virtual users do: "+strings.Join(names, ", "))
	f.StringVar(&w.password, "password", courses.DefaultPassword, "the workload's users' password (courses: the seed's demo password, `courses seed --password`)")
}

func (w *workloadFlags) build() (drill.Workload, error) {
	mk, ok := workloads[w.name]
	if !ok {
		return nil, fmt.Errorf("--workload %q: unknown; the drills know %v", w.name, keys(workloads))
	}
	return mk(w.password), nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
