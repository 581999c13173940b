package region

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/sandbox"
	"github.com/haven-platform/haven/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestConfigsGolden derives every component's configuration from specs and
// compares it with testdata/<name>.golden (go test -update rewrites them).
func TestConfigsGolden(t *testing.T) {
	layout := Layout{StateDir: "/srv/region/.haven", PGRoot: "/srv/region/.haven/pg",
		AppCommand: []string{"/opt/haven/bin/courses", "serve"}, ReleaseCommand: []string{"/opt/haven/bin/courses", "seed"},
		Sandbox: &sandbox.Profile{UID: 1912345678, GID: 1912345678}, PublicDir: "/run/haven/hv0badf00d"}
	for _, name := range []string{"default", "single-az", "vpc", "identity", "identity-vpc"} {
		t.Run(name, func(t *testing.T) {
			layout := layout
			src := name
			if name == "vpc" || name == "identity-vpc" {
				// In a VPC: a lease's /19 of 198.18.0.0/15.
				layout.VPC, src = netip.MustParsePrefix("198.18.64.0/19"), strings.TrimSuffix(strings.TrimSuffix(name, "-vpc"), "vpc")
				if src == "" {
					src = "default"
				}
			}
			in, err := os.ReadFile(filepath.Join("testdata", src+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := spec.Parse(in, name+".yaml")
			if err != nil {
				t.Fatal(err)
			}
			c, err := configs(s, layout)
			if err != nil {
				t.Fatal(err)
			}
			got := dump(c)
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestConfigsGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("configs differ from %s (go test -update rewrites it after review):\n%s", path, diff(string(want), got))
			}
		})
	}
}

func TestConfigsRefusesABadEndpoint(t *testing.T) {
	s := spec.Default()
	s.Database.Endpoint = "nowhere"
	if _, err := configs(s, Layout{StateDir: "/x", PGRoot: "/x/pg", AppCommand: []string{"/bin/true"}}); err == nil || !strings.Contains(err.Error(), "database.endpoint") {
		t.Fatalf("err = %v, want one naming database.endpoint", err)
	}
}

// dump writes v as "path: value" lines: exported fields in order, map keys
// sorted, values with a String method through it; functions, interfaces
// and nil pointers (what the region attaches at run time) are left out.
func dump(v any) string {
	var b strings.Builder
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		if v.IsValid() && v.Kind() != reflect.Pointer && v.Kind() != reflect.Map && v.Kind() != reflect.Slice && v.IsZero() {
			return // unset: the tier's default applies
		}
		if v.IsValid() && v.CanInterface() {
			if s, ok := v.Interface().(fmt.Stringer); ok && v.Kind() != reflect.Pointer {
				fmt.Fprintf(&b, "%s: %s\n", path, s.String())
				return
			}
		}
		switch v.Kind() {
		case reflect.Func, reflect.Interface, reflect.Chan, reflect.Invalid:
			return
		case reflect.Pointer:
			if !v.IsNil() {
				walk(path, v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if f := v.Type().Field(i); f.IsExported() {
					walk(strings.TrimPrefix(path+"."+f.Name, "."), v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			if v.Type() == reflect.TypeOf(json.RawMessage(nil)) {
				fmt.Fprintf(&b, "%s: %s\n", path, v.Bytes())
				return
			}
			if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
				fmt.Fprintf(&b, "%s: %v\n", path, v.Interface())
				return
			}
			for i := 0; i < v.Len(); i++ {
				walk(fmt.Sprintf("%s[%d]", path, i), v.Index(i))
			}
		case reflect.Map:
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
			for _, k := range keys {
				walk(fmt.Sprintf("%s[%v]", path, k), v.MapIndex(k))
			}
		default:
			if !v.IsZero() {
				fmt.Fprintf(&b, "%s: %v\n", path, v.Interface())
			}
		}
	}
	walk("", reflect.ValueOf(v))
	return b.String()
}

// diff lists the lines only in want (-) and only in got (+).
func diff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var out []string
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestOpsConfigDividesAlarmPeriodsByTheTimeScale: the spec's alarms keep
// AWS's periods; locally they are divided by time_scale (whole seconds, at
// least 1 s), and the engine and the sampler run at a quarter of the
// shortest period.
func TestOpsConfigDividesAlarmPeriodsByTheTimeScale(t *testing.T) {
	for _, c := range []struct {
		scale              string
		hosts, atMax       time.Duration
		eval, sample       time.Duration
		metrics, consoleAt string
	}{
		{"", time.Minute, 5 * time.Minute, 10 * time.Second, time.Second, "127.0.0.1:9464", "127.0.0.1:8444"},
		{"time_scale: 20\n", 3 * time.Second, 15 * time.Second, 750 * time.Millisecond, 750 * time.Millisecond, "127.0.0.1:9464", "127.0.0.1:8444"},
		{"time_scale: 600\n", time.Second, time.Second, 250 * time.Millisecond, 250 * time.Millisecond, "127.0.0.1:9464", "127.0.0.1:8444"},
	} {
		s, err := spec.Parse([]byte(c.scale), "ops.yaml")
		if err != nil {
			t.Fatal(err)
		}
		o, err := opsConfig(s, Layout{StateDir: "/srv/region/.haven"})
		if err != nil {
			t.Fatal(err)
		}
		periods := map[string]time.Duration{}
		for _, d := range o.Alarms {
			periods[d.Name] = d.Period
		}
		if periods["healthy-hosts-below-min"] != c.hosts || periods["asg-at-max"] != c.atMax || o.EvalInterval != c.eval || o.SampleInterval != c.sample {
			t.Errorf("%q: periods %v, eval %s, sample %s", c.scale, periods, o.EvalInterval, o.SampleInterval)
		}
		if o.MetricsListen != c.metrics || o.ConsoleListen != c.consoleAt || o.ReportsDir != "/srv/region/.haven/drills" {
			t.Errorf("%q: %+v", c.scale, o)
		}
	}
	// The spec keeps AWS's numbers: tfvars and the parity test read them.
	s := spec.Default()
	s.TimeScale = 60
	defs, _ := s.AlarmDefinitions()
	if defs[0].Period != time.Minute {
		t.Errorf("the spec's own definitions were scaled: %s", defs[0].Period)
	}
}

// TestAlarmsChangedOnApply: an apply gives the alarm engine a new
// configuration when its definitions, actions or interval change, and
// only then: a threshold, time_scale, and fleet.min (healthy hosts'
// threshold) do; a listener or an unrelated field does not.
func TestAlarmsChangedOnApply(t *testing.T) {
	base := "fleet: {min: 2, desired: 2, max: 6}\n"
	ops := func(extra string) OpsConfig {
		t.Helper()
		s, err := spec.Parse([]byte(base+extra), "ops.yaml")
		if err != nil {
			t.Fatal(err)
		}
		o, err := opsConfig(s, Layout{StateDir: "/srv/region/.haven"})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	from := ops("")
	for _, c := range []struct {
		name, extra string
		want        bool
	}{
		{"nothing", "", false},
		{"a threshold", "alarms: {thresholds: {p99_latency_seconds: 0.5}}\n", true},
		{"time_scale", "time_scale: 30\n", true},
		{"an action", "alarms: {actions: [{name: hook, webhook: {url: \"https://hooks.example.com/x\"}}]}\n", true},
		{"a custom alarm", "alarms: {custom: [{name: slow, metric: TargetResponseTime, statistic: p50, period: 60s, evaluation_periods: 3, threshold: 0.3, comparison_operator: GreaterThanThreshold}]}\n", true},
		{"metrics.listen", "metrics: {listen: 127.0.0.1:9465}\n", false},
	} {
		if got := alarmsChanged(from, ops(c.extra)); got != c.want {
			t.Errorf("%s: alarmsChanged = %v, want %v", c.name, got, c.want)
		}
	}
	base = "fleet: {min: 1, desired: 2, max: 6}\n"
	if !alarmsChanged(from, ops("")) {
		t.Error("fleet.min 2 → 1: alarmsChanged = false; healthy-hosts-below-min's threshold is fleet.min")
	}
	base = "fleet: {min: 2, desired: 2, max: 7}\n"
	if alarmsChanged(from, ops("")) {
		t.Error("fleet.max 6 → 7: alarmsChanged = true, want false")
	}
}
