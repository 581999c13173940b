// Package testkit starts real local regions from the real haven and courses binaries, with tight timings, for integration tests.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/vpc"
	"github.com/haven-platform/haven/internal/zone"
)

var build struct {
	once sync.Once
	dir  string
	err  error
}

// Binaries builds haven and courses once per test binary and returns their directory.
func Binaries(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "haven-bin-")
		if err != nil {
			build.err = err
			return
		}
		_ = os.Chmod(dir, 0o755)
		root := repoRoot()
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/haven", "./cmd/courses")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		build.dir = dir
	})
	if build.err != nil {
		t.Fatalf("build binaries: %v", build.err)
	}
	return build.dir
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Options shapes a test region.
type Options struct {
	// Students and Courses size the seed data. Default 100 and 10.
	Students, Courses int
	// Min, Desired and Max capacity. Default 2, 2, 6.
	Min, Desired, Max int
	// MultiAZ runs a standby. Default false (faster).
	MultiAZ bool
	// Extra is appended to the generated spec (YAML), e.g. for other sections.
	Extra string
	// AppEnv is app.env: extra environment of every instance. Default none.
	AppEnv map[string]string
	// ObjStore and Edge are added to the objstore and edge mappings (which
	// set the listen addresses), e.g. "max_upload: 1MiB". Default none.
	ObjStore, Edge string
	// CPU is each instance's CPU quota in cores. Default 0.5.
	CPU float64
	// HealthCheckType is the fleet's health check type. Default elb.
	HealthCheckType string
	// Scaling is fleet.scaling as a YAML flow list, e.g.
	// `[{target_tracking: cpu, target: 50, warmup: 10s}]`. Default none
	// (no scaling key, so Extra or an edit may add one).
	Scaling string
	// TimeScale is the spec's time_scale. Default: none written (1), so
	// Extra may set it instead.
	TimeScale float64
	// HealthCheck is app.health_check as a YAML flow mapping. Default
	// {path: /healthz, interval: 300ms, timeout: 200ms, healthy: 2, unhealthy: 2}.
	HealthCheck string
	// Dir is where the region's directory (spec and state) is made.
	// Default os.TempDir(). Instances see a private /tmp of their own, so a
	// test of what they cannot reach on the host puts the region elsewhere.
	Dir string
	// Env is added to the environment of every haven command (and so of
	// the daemon), e.g. HAVEN_NETWORK=loopback. Default none.
	Env []string
}

// Region is a running test region.
type Region struct {
	t        testing.TB
	Bin      string
	StateDir string
	SpecFile string
	Ports    Ports
	Client   *api.Client
	env      []string

	mu sync.Mutex
	// dbHost is the database endpoint's address the instances use inside
	// the region's VPC (their PGHOST), learnt from the status: with a VPC
	// every region's instances have PGPORT=5432.
	dbHost string
}

// Ports are the region's listener ports on 127.0.0.1.
type Ports struct{ HTTPS, HTTP, DB, Secrets, App, S3, Edge, Metrics, Console int }

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewSpec writes a spec for a fast test region and returns the region handle
// without starting it.
func NewSpec(t testing.TB, o Options) *Region {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real region from the built binaries: skipped with -short (scripts/test runs it)")
	}
	if o.Students == 0 {
		o.Students = 100
	}
	if o.Courses == 0 {
		o.Courses = 10
	}
	if o.Min == 0 && o.Desired == 0 {
		o.Min, o.Desired = 2, 2
	}
	if o.Max == 0 {
		o.Max = 6
	}
	if o.CPU == 0 {
		o.CPU = 0.5
	}
	if o.HealthCheckType == "" {
		o.HealthCheckType = "elb"
	}
	scalingPart := ""
	if o.Scaling != "" {
		scalingPart = ", scaling: " + o.Scaling
	}
	timeScale := ""
	if o.TimeScale != 0 {
		timeScale = fmt.Sprintf("time_scale: %g\n", o.TimeScale)
	}
	if o.HealthCheck == "" {
		o.HealthCheck = "{path: /healthz, interval: 300ms, timeout: 200ms, healthy: 2, unhealthy: 2}"
	}
	bin := Binaries(t)
	dir, err := os.MkdirTemp(o.Dir, "haven-region-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o711)
	r := &Region{t: t, Bin: bin, StateDir: filepath.Join(dir, "state"), SpecFile: filepath.Join(dir, "haven.yaml"), env: o.Env}
	r.Ports = Ports{HTTPS: FreePort(t), HTTP: FreePort(t), DB: FreePort(t), Secrets: FreePort(t), App: 20000 + rand.IntN(20000),
		S3: FreePort(t), Edge: FreePort(t), Metrics: FreePort(t), Console: FreePort(t)}
	if o.ObjStore != "" {
		o.ObjStore = ", " + o.ObjStore
	}
	if o.Edge != "" {
		o.Edge = ", " + o.Edge
	}
	// No env line without AppEnv: a test may add one (apply's does).
	env := ""
	if len(o.AppEnv) > 0 {
		var kv []string
		for k, v := range o.AppEnv {
			kv = append(kv, fmt.Sprintf("%s: %q", k, v))
		}
		sort.Strings(kv)
		env = "  env: {" + strings.Join(kv, ", ") + "}\n"
	}
	spec := fmt.Sprintf(`name: test
app:
  command: [courses, serve]
%s  port: %d
  release: [courses, release, --students, "%d", --courses, "%d"]
  health_check: %s
  instance: {cpu: %g, memory: 256MiB}
fleet: {min: %d, desired: %d, max: %d, health_check_type: %s, grace_period: 5s%s}
%sload_balancer: {https: 127.0.0.1:%d, http: 127.0.0.1:%d, algorithm: least_outstanding_requests, deregistration_delay: 2s}
database: {multi_az: %v, endpoint: 127.0.0.1:%d}
secrets: {listen: 127.0.0.1:%d}
objstore: {listen: 127.0.0.1:%d%s}
edge: {listen: 127.0.0.1:%d%s}
metrics: {listen: 127.0.0.1:%d}
console: {listen: 127.0.0.1:%d}
%s`, env, r.Ports.App, o.Students, o.Courses, o.HealthCheck, o.CPU, o.Min, o.Desired, o.Max, o.HealthCheckType, scalingPart, timeScale, r.Ports.HTTPS, r.Ports.HTTP, o.MultiAZ, r.Ports.DB, r.Ports.Secrets,
		r.Ports.S3, o.ObjStore, r.Ports.Edge, o.Edge, r.Ports.Metrics, r.Ports.Console, o.Extra)
	if err := os.WriteFile(r.SpecFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Client = api.NewClient(r.StateDir)
	t.Cleanup(func() {
		// Whatever the test did, leave nothing running.
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if st, err := r.Client.Status(ctx); err == nil {
			_ = r.Client.Shutdown(ctx)
			WaitGone(ctx, st.PID)
		}
		for _, pid := range r.Processes() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// A daemon that died without stopping leaves its cgroups and its
		// endpoint's nftables table; down with no daemon removes them.
		if _, errOut, err := r.Haven(ctx, "down"); err != nil {
			t.Logf("haven down at cleanup: %v\n%s", err, errOut)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("region state kept in %s", dir)
		}
	})
	return r
}

// Haven runs the haven CLI with the region's state dir and spec; it returns stdout, stderr and the error.
func (r *Region) Haven(ctx context.Context, args ...string) (string, string, error) {
	full := append([]string{}, args...)
	full = append(full, "--state-dir", r.StateDir)
	if len(args) > 0 && (args[0] == "up" || args[0] == "validate" || args[0] == "plan" || args[0] == "apply" || args[0] == "status") {
		full = append(full, "-f", r.SpecFile)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(r.Bin, "haven"), full...)
	if len(r.env) > 0 {
		cmd.Env = append(os.Environ(), r.env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// Up brings the region up with --detach and returns its status.
func (r *Region) Up(ctx context.Context) api.Status {
	r.t.Helper()
	out, errOut, err := r.Haven(ctx, "up", "--detach")
	if err != nil {
		r.t.Fatalf("haven up --detach: %v\nstdout:\n%s\nstderr:\n%s\ndaemon log:\n%s", err, out, errOut, r.Tail("daemon.log"))
	}
	st, err := r.Client.Status(ctx)
	if err != nil {
		r.t.Fatalf("status after up: %v", err)
	}
	r.learn(st)
	return st
}

// learn remembers what Processes needs of the status.
func (r *Region) learn(st api.Status) {
	if host, _, err := net.SplitHostPort(st.Network.DBEndpoint); err == nil {
		r.mu.Lock()
		r.dbHost = host
		r.mu.Unlock()
	}
}

// Env returns the environment the region's haven commands run with.
func (r *Region) Env() []string { return append(os.Environ(), r.env...) }

// NetworkLeft lists what the region's VPC has on this machine: network
// namespaces, host links, host nftables tables and its address lease,
// found by name (the region's prefix). After `haven down` it must be empty.
func (r *Region) NetworkLeft() []string {
	prefix := vpc.Prefix(r.StateDir)
	var left []string
	ents, _ := os.ReadDir(vpc.NetnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			left = append(left, "namespace "+e.Name())
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(strings.TrimSuffix(f[1], ":"), prefix) {
				left = append(left, "host link "+f[1])
			}
		}
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[2], prefix) {
				left = append(left, "nftables table "+f[1]+" "+f[2])
			}
		}
	}
	if _, ok, _ := zone.FindLease("", r.StateDir); ok {
		left = append(left, "address lease")
	}
	return left
}

// StatusJSON runs `haven status --json` and decodes it.
func (r *Region) StatusJSON(ctx context.Context) api.Status {
	r.t.Helper()
	out, errOut, err := r.Haven(ctx, "status", "--json")
	if err != nil {
		r.t.Fatalf("haven status --json: %v\n%s", err, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		r.t.Fatalf("decode status: %v\n%s", err, out)
	}
	r.learn(st)
	return st
}

// Tail returns the last 4000 bytes of a file in the state dir (a log, for a
// failing test's message).
func (r *Region) Tail(name string) string {
	data, _ := os.ReadFile(filepath.Join(r.StateDir, name))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Processes lists every live process that belongs to the region: those whose
// command line names the state dir, those whose environment carries the
// region's database endpoint port (every app instance and release task), and
// all their descendants.
func (r *Region) Processes() []int {
	procs := scanProcs()
	mine := map[int]bool{}
	marker := "PGPORT=" + strconv.Itoa(r.Ports.DB)
	r.mu.Lock()
	vpcMarker := "PGHOST=" + r.dbHost
	r.mu.Unlock()
	for _, p := range procs {
		if strings.Contains(p.cmdline, r.StateDir) || envHas(p.pid, marker) || (vpcMarker != "PGHOST=" && envHas(p.pid, vpcMarker)) {
			mine[p.pid] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			if !mine[p.pid] && mine[p.ppid] {
				mine[p.pid], changed = true, true
			}
		}
	}
	var out []int
	for pid := range mine {
		if pid != os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

type proc struct {
	pid, ppid int
	cmdline   string
}

func scanProcs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, proc{pid: pid, ppid: ppid, cmdline: strings.ReplaceAll(string(cl), "\x00", " ")})
	}
	return out
}

func envHas(pid int, kv string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, e := range bytes.Split(env, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// Alive reports whether pid exists and is not a zombie.
//
// A killed multi-threaded process's main thread can turn zombie while its
// other threads are still exiting and still hold its files (a flock, a
// listening socket): the process counts as alive until every thread is
// gone or a zombie.
func Alive(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) > 0 && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// WaitGone waits until pid has exited or ctx is done.
func WaitGone(ctx context.Context, pid int) bool {
	for Alive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// WaitNoProcesses waits until the region has no live process; it returns the leftovers otherwise.
func (r *Region) WaitNoProcesses(ctx context.Context) []int {
	for {
		left := r.Processes()
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return left
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Describe renders pids with their command lines, for failure messages.
func Describe(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Fprintf(&b, "  %d %s\n", pid, strings.ReplaceAll(string(cl), "\x00", " "))
	}
	return b.String()
}
