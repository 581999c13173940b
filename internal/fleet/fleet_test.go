package fleet

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/testkit"
	"github.com/haven-platform/haven/internal/zone"
)

// The test binary doubles as the app: with HAVEN_FLEET_TEST_APP=1 it serves HTTP
// on $HOST:$PORT. HAVEN_TEST_IGNORE_TERM=1 makes it ignore SIGTERM;
// HAVEN_TEST_CHILD=1 makes it start a child (sleep) in its process group.
func TestMain(m *testing.M) {
	if os.Getenv("HAVEN_FLEET_TEST_APP") == "1" {
		testApp()
		os.Exit(0)
	}
	if os.Getenv("HAVEN_FLEET_TEST_PROBE") == "1" {
		probe(os.Args[1:])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testApp() {
	if os.Getenv("HAVEN_TEST_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	child := 0
	if os.Getenv("HAVEN_TEST_CHILD") == "1" {
		c := exec.Command("sleep", "300")
		if err := c.Start(); err != nil {
			fmt.Println("child:", err)
			os.Exit(3)
		}
		child = c.Process.Pid
	}
	l, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT")))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(2)
	}
	fmt.Println("listening on", l.Addr())
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	http.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"args": os.Args[1:], "id": os.Getenv("HAVEN_INSTANCE_ID"), "zone": os.Getenv("HAVEN_ZONE"),
			"host": os.Getenv("HOST"), "port": os.Getenv("PORT"), "extra": os.Getenv("EXTRA"),
			"per_instance": os.Getenv("PER_INSTANCE"), "child": child, "pid": os.Getpid(),
		})
	})
	srv := &http.Server{}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		<-ch
		srv.Close()
	}()
	srv.Serve(l)
}

// eventLog records events for assertions.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.evs = append(l.evs, e); l.mu.Unlock() }
func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

// testZones returns two zones in a random 127.x range so parallel suites do not collide.
func testZones(t *testing.T) []*zone.Zone {
	b := make([]byte, 1)
	rand.Read(b)
	base := netip.MustParsePrefix(fmt.Sprintf("127.%d.0.0/16", 100+int(b[0])%150))
	zs, err := zone.New(zone.Config{Region: "test-1", Base: base})
	if err != nil {
		t.Fatal(err)
	}
	return zs
}

func testConfig(t *testing.T, ev *eventLog) Config {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Name:  "web",
		Zones: testZones(t),
		Template: LaunchTemplate{
			Command: []string{exe, "--id=${INSTANCE_ID}", "--zone=${ZONE}", "--addr=${HOST}:${PORT}", "$HOME"},
			Env:     map[string]string{"HAVEN_FLEET_TEST_APP": "1", "EXTRA": "x"},
		},
		Min: 2, Max: 6, Desired: 2,
		StopTimeout:       2 * time.Second,
		ReconcileInterval: 100 * time.Millisecond,
		LogDir:            t.TempDir(),
		Logger:            testkit.Logger(t),
		OnEvent:           ev.add,
	}
}

// startFleet starts f and makes sure it is stopped and every pid it ever ran is gone.
func startFleet(t *testing.T, cfg Config) *Fleet {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func live(f *Fleet) []InstanceStatus {
	var out []InstanceStatus
	for _, s := range f.Instances() {
		if s.State.Live() {
			out = append(out, s)
		}
	}
	return out
}

func inService(f *Fleet) []InstanceStatus {
	var out []InstanceStatus
	for _, s := range f.Instances() {
		if s.State == StateInService {
			out = append(out, s)
		}
	}
	return out
}

// settled reports whether the fleet holds exactly n instances, all in service,
// with zone counts want (by zone name), and nothing stopping.
func settled(f *Fleet, want map[string]int) bool {
	all := f.Instances()
	got := map[string]int{}
	for _, s := range all {
		if s.State != StateInService || s.InServiceSince.Before(s.LaunchedAt) {
			return false // an in-service instance knows since when (the warmup counts from it)
		}
		got[s.Zone]++
	}
	for z, n := range want {
		if got[z] != n {
			return false
		}
	}
	return len(got) <= len(want)
}

func zoneCounts(ss []InstanceStatus) map[string]int {
	m := map[string]int{}
	for _, s := range ss {
		m[s.Zone]++
	}
	return m
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func getInfo(t *testing.T, s InstanceStatus) map[string]any {
	t.Helper()
	var resp *http.Response
	var err error
	waitFor(t, "app "+s.ID+" answering", func() bool {
		resp, err = http.Get("http://" + net.JoinHostPort(s.Address, strconv.Itoa(s.Port)) + "/info")
		return err == nil
	})
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFleetLaunchesMinAcrossZones(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.EnvFunc = func(i InstanceInfo) map[string]string {
		return map[string]string{"PER_INSTANCE": i.ID + "@" + i.Host}
	}
	f := startFleet(t, cfg)
	waitFor(t, "2 instances in service, 1 per zone", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })

	for _, s := range f.Instances() {
		if !strings.HasPrefix(s.ID, "i-0") || len(s.ID) != 19 {
			t.Errorf("id %q: want i-0 and 16 hex digits", s.ID)
		}
		z := cfg.Zones[0]
		if s.Zone == "b" {
			z = cfg.Zones[1]
		}
		if !z.CIDR.Contains(netip.MustParseAddr(s.Address)) || s.AZ != "test-1"+s.Zone {
			t.Errorf("%s: address %s az %s, want in %s", s.ID, s.Address, s.AZ, z.CIDR)
		}
		info := getInfo(t, s)
		wantArgs := []any{"--id=" + s.ID, "--zone=" + s.Zone, "--addr=" + s.Address + ":" + strconv.Itoa(s.Port), "$HOME"}
		if !slices.Equal(info["args"].([]any), wantArgs) {
			t.Errorf("args got %v, want %v", info["args"], wantArgs)
		}
		if info["id"] != s.ID || info["zone"] != s.Zone || info["host"] != s.Address || info["port"] != strconv.Itoa(s.Port) ||
			info["extra"] != "x" || info["per_instance"] != s.ID+"@"+s.Address {
			t.Errorf("env got %v", info)
		}
		// The app is bound to its zone address only.
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))); err == nil {
			c.Close()
			t.Errorf("%s reachable on 127.0.0.1:%d", s.ID, s.Port)
		}
		b, err := os.ReadFile(filepath.Join(cfg.LogDir, s.ID+".log"))
		if err != nil || !strings.Contains(string(b), "listening on "+s.Address) {
			t.Errorf("log %s: got %q, %v", s.ID, b, err)
		}
	}
	var types []string
	for _, e := range ev.all() {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, ","); got != "launch,in-service,launch,in-service" {
		t.Errorf("events got %s", got)
	}
}

func TestFleetReplacesKilledInstance(t *testing.T) {
	ev := &eventLog{}
	f := startFleet(t, testConfig(t, ev))
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	victim := f.Instances()[1]
	if err := f.Signal(victim.ID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replacement", func() bool {
		ss := f.Instances()
		return settled(f, map[string]int{"a": 1, "b": 1}) && !slices.ContainsFunc(ss, func(s InstanceStatus) bool { return s.ID == victim.ID })
	})
	if c := f.Capacity(); c.Desired != 2 {
		t.Errorf("desired got %d, want 2", c.Desired)
	}
	if alive(victim.PID) {
		t.Errorf("killed pid %d still alive", victim.PID)
	}
	var replaced bool
	for _, e := range ev.all() {
		if e.Type == EventReplace && e.Instance == victim.ID && strings.Contains(e.Reason, "killed") {
			replaced = true
		}
	}
	if !replaced {
		t.Errorf("no replace event for %s in %+v", victim.ID, ev.all())
	}
	// The replacement went to the zone that lost the instance.
	for _, s := range f.Instances() {
		if s.Zone == victim.Zone && s.ID == victim.ID {
			t.Errorf("victim still listed")
		}
	}
	// Activity: one launch per zone at start, the replacement in the
	// victim's zone, one termination there with the bounded cause "exited".
	got := map[ActivityCount]bool{}
	for _, a := range f.Activity() {
		got[a] = true
	}
	other := "a"
	if victim.Zone == "a" {
		other = "b"
	}
	for _, want := range []ActivityCount{
		{Kind: EventLaunch, Zone: victim.Zone, Cause: ReasonCapacity, Count: 2},
		{Kind: EventLaunch, Zone: other, Cause: ReasonCapacity, Count: 1},
		{Kind: EventTerminate, Zone: victim.Zone, Cause: "exited", Count: 1},
	} {
		if !got[want] {
			t.Errorf("activity %+v missing from %+v", want, f.Activity())
		}
	}
	if len(got) != 3 {
		t.Errorf("activity = %+v, want exactly 3 rows", f.Activity())
	}
}

func TestActivityCause(t *testing.T) {
	for in, want := range map[string]string{
		"exited: signal: killed": "exited", "fleet stopped": "fleet-stopped", "scale-in": "scale-in",
		"terminated by request": "terminated-by-request", "": "unknown", "Unhealthy": "unhealthy",
	} {
		if got := cause(in); got != want {
			t.Errorf("cause(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFleetScaleOutAndIn(t *testing.T) {
	ev := &eventLog{}
	f := startFleet(t, testConfig(t, ev))
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	if err := f.SetCapacity(2, 5, 6); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 in service, 3/2", func() bool { return settled(f, map[string]int{"a": 3, "b": 2}) })
	before := f.Instances()

	if err := f.SetCapacity(1, 2, 6); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 in service, 1/1", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	// Scale-in removed the oldest of each zone: the newest per zone survive.
	newest := map[string]string{}
	for _, s := range before { // oldest first
		newest[s.Zone] = s.ID
	}
	for _, s := range f.Instances() {
		if newest[s.Zone] != s.ID {
			t.Errorf("zone %s: survivor %s, want newest %s", s.Zone, s.ID, newest[s.Zone])
		}
	}
	for _, s := range before {
		if newest[s.Zone] != s.ID && alive(s.PID) {
			t.Errorf("scaled-in pid %d still alive", s.PID)
		}
	}
}

func TestFleetSetCapacityValidation(t *testing.T) {
	ev := &eventLog{}
	f, err := New(testConfig(t, ev))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][3]int{{-1, 0, 1}, {3, 3, 2}, {1, 0, 3}, {1, 4, 3}} {
		if err := f.SetCapacity(c[0], c[1], c[2]); !errors.Is(err, ErrInvalidCapacity) {
			t.Errorf("SetCapacity%v: got %v, want ErrInvalidCapacity", c, err)
		}
	}
	if err := f.SetCapacity(0, 0, 0); err != nil {
		t.Errorf("SetCapacity(0,0,0): %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ev := &eventLog{}
	good := testConfig(t, ev)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "fleet.name"},
		{"no zones", func(c *Config) { c.Zones = nil }, "fleet.zones"},
		{"no command", func(c *Config) { c.Template.Command = nil }, "fleet.template.command"},
		{"bad max", func(c *Config) { c.Max = 1 }, "fleet.max: must be ≥ fleet.min (2), got 1"},
		{"elb without balancer", func(c *Config) { c.HealthCheckType = "elb" }, "needs a Balancer"},
		{"bad type", func(c *Config) { c.HealthCheckType = "tcp" }, "fleet.health_check_type"},
		{"bad cpu", func(c *Config) { c.Template.CPU = -1 }, "fleet.template.cpu"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tt := range tests {
		c := good
		tt.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestFleetRebalanceLaunchesBeforeTerminating(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Min, cfg.Desired = 1, 4
	f := startFleet(t, cfg)
	waitFor(t, "4 in service, 2/2", func() bool { return settled(f, map[string]int{"a": 2, "b": 2}) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var removedA []string
	for _, s := range f.Instances() {
		if s.Zone == "b" {
			if err := f.Terminate(ctx, s.ID, true); err != nil {
				t.Fatal(err)
			}
		} else {
			removedA = append(removedA, s.ID)
		}
	}
	if c := f.Capacity(); c.Desired != 2 {
		t.Fatalf("desired got %d, want 2", c.Desired)
	}
	waitFor(t, "rebalanced 1/1", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })

	// After the manual terminations: a rebalance launch in b, then a scale-in in a
	// of the oldest instance, in that order.
	var seq []string
	started := false
	for _, e := range ev.all() {
		if e.Type == EventLaunch && e.Reason == ReasonRebalance {
			started = true
		}
		if started && (e.Type == EventLaunch || e.Type == EventInService || e.Type == EventTerminate) {
			seq = append(seq, e.Type+":"+e.Zone+":"+e.Reason)
			if e.Type == EventTerminate && e.Instance != removedA[0] {
				t.Errorf("rebalance terminated %s, want oldest %s", e.Instance, removedA[0])
			}
		}
	}
	want := []string{"launch:b:rebalance", "in-service:b:", "terminate:a:scale-in"}
	if !slices.Equal(seq, want) {
		t.Errorf("events got %v, want %v", seq, want)
	}
	if err := f.SetCapacity(2, 2, 6); err != nil {
		t.Fatal(err)
	}
	if err := f.Terminate(ctx, f.Instances()[0].ID, true); !errors.Is(err, ErrInvalidCapacity) {
		t.Errorf("terminate below min: got %v, want ErrInvalidCapacity", err)
	}
	if err := f.Terminate(ctx, "i-0nope", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("terminate unknown: got %v, want ErrNotFound", err)
	}
}

// groupPids lists the processes whose process group is pgid.
func groupPids(t *testing.T, pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func TestFleetStopLeavesNoProcess(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Template.Env["HAVEN_TEST_CHILD"] = "1"
	cfg.Template.Env["HAVEN_TEST_IGNORE_TERM"] = "1" // forces the SIGKILL path
	cfg.StopTimeout = 200 * time.Millisecond
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	var pids []int
	for _, s := range f.Instances() {
		info := getInfo(t, s)
		child := int(info["child"].(float64))
		members := groupPids(t, s.PID)
		if !slices.Contains(members, s.PID) || !slices.Contains(members, child) {
			t.Fatalf("process group %d got %v, want app and child %d", s.PID, members, child)
		}
		pids = append(pids, members...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d alive after Stop", p)
		}
	}
	if n := len(f.Instances()); n != 0 {
		t.Errorf("instances after Stop: got %d, want 0", n)
	}
	if err := f.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestFleetCgroups(t *testing.T) {
	b := make([]byte, 4)
	rand.Read(b)
	m, err := cgroup.NewManager(fmt.Sprintf("haven-fleet-test-%x", b), testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Enabled() {
		t.Fatal("cgroups not usable on this host; this test needs root and cgroups")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Remove(ctx); err != nil {
			t.Errorf("remove cgroups: %v", err)
		}
	})
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Cgroups = m
	cfg.Template.CPU, cfg.Template.MemoryBytes = 0.5, 256<<20
	cfg.Template.Env["HAVEN_TEST_CHILD"] = "1"
	f := startFleet(t, cfg)
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	for _, s := range f.Instances() {
		info := getInfo(t, s)
		child := int(info["child"].(float64))
		g, err := m.Create(s.ID, cgroup.Limits{CPU: 0.5, MemoryBytes: 256 << 20}) // reopens the existing group
		if err != nil {
			t.Fatal(err)
		}
		procs, err := g.Procs()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(procs, s.PID) || !slices.Contains(procs, child) {
			t.Errorf("%s: cgroup procs %v, want app %d and child %d", s.ID, procs, s.PID, child)
		}
		if l, _ := g.Limits(); l.CPU != 0.5 || l.MemoryBytes != 256<<20 {
			t.Errorf("%s: limits %+v", s.ID, l)
		}
	}
	victim := f.Instances()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Terminate(ctx, victim.ID, false); err != nil {
		t.Fatal(err)
	}
	dir := ""
	if g, err := m.Create("probe", cgroup.Limits{}); err == nil {
		dir = filepath.Dir(g.Dir("cpu"))
		g.Delete(ctx)
	}
	if _, err := os.Stat(filepath.Join(dir, victim.ID)); m.Version() == 1 && err == nil {
		t.Errorf("cgroup of terminated %s still exists", victim.ID)
	}
}
