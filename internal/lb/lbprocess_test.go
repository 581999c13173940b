package lb

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/proc"
)

// runServeProcess is the test binary acting as `haven lb serve`.
func runServeProcess() int {
	fs := flag.NewFlagSet("lb serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	specFD := fs.Int("spec-fd", 3, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	f := os.NewFile(uintptr(*specFD), "spec")
	b, err := io.ReadAll(f)
	f.Close()
	var ps ProcessSpec
	if err == nil {
		err = json.Unmarshal(b, &ps)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "read spec:", err)
		return 1
	}
	files := map[string]*os.File{}
	for i, name := range ps.Listeners {
		files[name] = os.NewFile(uintptr(*specFD+1+i), name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = Serve(ctx, ServeOptions{Dir: *dir, Spec: ps, Listeners: files, Version: os.Getenv("HAVEN_LB_TEST_VERSION"),
		DrainTimeout: 5 * time.Second, Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// newTestProcess returns a Process that runs the test binary as its load
// balancer process, with the given version.
func newTestProcess(t *testing.T, dir, version string) *Process {
	t.Helper()
	cfg := Config{
		HTTPSAddr:           "127.0.0.1:0",
		TLS:                 dirTLS(t, dir),
		HealthCheck:         HealthCheck{Path: healthPath, Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2},
		DeregistrationDelay: time.Second,
	}
	p, err := NewProcess(ProcessConfig{
		Dir: dir, Config: cfg, Command: []string{os.Args[0]}, Version: version, AccessLogPath: filepath.Join(dir, "access.log"),
		Env:    []string{"HAVEN_LB_TEST_SERVE=1", "HAVEN_LB_TEST_VERSION=" + version},
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dirTLS is a server TLS configuration from the CA kept in dir/ca, so
// every daemon side of one test serves the same CA's certificates.
func dirTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	c, err := ca.LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueServer([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// lbClient trusts dir's CA.
func lbClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	c, err := ca.LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Pool()}, MaxIdleConnsPerHost: 16, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// stopAll stops p and kills any load balancer process a test left.
func stopAll(t *testing.T, dir string, ps ...*Process) {
	t.Helper()
	for _, p := range ps {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = p.Stop(ctx)
		cancel()
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "lb-*.json"))
	for _, r := range recs {
		var rec record
		if b, err := os.ReadFile(r); err == nil && json.Unmarshal(b, &rec) == nil && rec.Identity.Check() == nil {
			_ = syscall.Kill(rec.Identity.PID, syscall.SIGKILL)
		}
	}
}

func waitHealthyVia(t *testing.T, p *Process, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, id := range ids {
		for {
			if s, ok := p.TargetHealth(id); ok && s == StateHealthy {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("target %s not healthy: %+v", id, p.Targets())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func startedProcess(t *testing.T, dir, version string) (*Process, *backend, *backend) {
	t.Helper()
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := newTestProcess(t, dir, version)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, bk := range []*backend{a, b} {
		if err := p.Register(Target{ID: bk.id, Zone: bk.id, Addr: bk.srv.Listener.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	waitHealthyVia(t, p, "a", "b")
	return p, a, b
}

// TestProcessOutlivesItsDaemon: the daemon side goes away (as in a crash:
// nothing stops the process) and a new one adopts the same process, its
// sockets and its targets, with no failed request under load.
func TestProcessOutlivesItsDaemon(t *testing.T) {
	dir := t.TempDir()
	p1, _, _ := startedProcess(t, dir, "v1")
	pid := p1.PID()
	url := p1.HTTPSURL() + "/"
	ld := startLoad(t, lbClient(t, dir), url, 4)
	ld.waitOK(t, 50)
	p1.Detach()
	ld.waitOK(t, 50) // nobody supervises it, it serves
	p2 := newTestProcess(t, dir, "v1")
	t.Cleanup(func() { stopAll(t, dir, p2) })
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p2.PID(); got != pid {
		t.Fatalf("adopted pid %d, want %d (the running process)", got, pid)
	}
	if a := p2.Adoption(); a.Adopted != pid || a.Replaced != 0 {
		t.Fatalf("adoption %+v", a)
	}
	for _, id := range []string{"a", "b"} {
		if s, _ := p2.TargetHealth(id); s != StateHealthy {
			t.Fatalf("after adoption target %s is %q, want healthy (from the process)", id, s)
		}
	}
	// Registering an adopted target again, unchanged, is a no-op.
	tg := p2.Targets()
	if err := p2.Register(Target{ID: "a", Zone: "a", Addr: tg[0].Addr}); err != nil {
		t.Fatalf("register an adopted target again: %v", err)
	}
	ld.waitOK(t, 50)
	ld.check(t)
}

// TestProcessKilledIsReplaced: SIGKILL of the load balancer process; the
// daemon side starts another at once on the same sockets with the targets
// healthy, so requests succeed again without waiting for health checks.
func TestProcessKilledIsReplaced(t *testing.T) {
	dir := t.TempDir()
	p, _, _ := startedProcess(t, dir, "v1")
	t.Cleanup(func() { stopAll(t, dir, p) })
	old := p.PID()
	url := p.HTTPSURL() + "/"
	c := lbClient(t, dir)
	if _, err := getOK(c, url); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var back time.Duration
	for {
		if _, err := getOK(c, url); err == nil && p.PID() != old && p.PID() != 0 {
			back = time.Since(killed)
			break
		}
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("site not back 15 s after the load balancer process was killed (pid now %d)", p.PID())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("site back %v after SIGKILL of the load balancer process (pid %d → %d)", back, old, p.PID())
	for _, id := range []string{"a", "b"} {
		if s, _ := p.TargetHealth(id); s != StateHealthy {
			t.Fatalf("restored target %s is %q, want healthy", id, s)
		}
	}
	ld := startLoad(t, c, url, 4)
	ld.waitOK(t, 50)
	ld.check(t)
}

// TestProcessHotRestart: a new process takes the sockets and the targets'
// states and the old one drains, with no failed request; a daemon of
// another version replaces the process it adopts the same way.
func TestProcessHotRestart(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() { // the access log says why a request failed
			b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, `"status":5`) || strings.Contains(line, `"error"`) {
					t.Log(line)
				}
			}
		}
	})
	p1, _, _ := startedProcess(t, dir, "v1")
	first := p1.PID()
	url := p1.HTTPSURL() + "/"
	ld := startLoad(t, lbClient(t, dir), url, 8)
	ld.waitOK(t, 50)
	if err := p1.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := p1.PID()
	if second == first {
		t.Fatal("restart kept the same process")
	}
	ld.waitOK(t, 100)
	waitExit(t, first)

	// An upgrade: a daemon of version v2 adopts v1's process and replaces it.
	p1.Detach()
	p2 := newTestProcess(t, dir, "v2")
	t.Cleanup(func() { stopAll(t, dir, p2) })
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := p2.Adoption()
	if a.Adopted != second || a.Replaced != second || !strings.Contains(a.ReplacedReason, "version v1") {
		t.Fatalf("adoption %+v, want pid %d adopted and replaced for its version", a, second)
	}
	if st := p2.State(); st.Version != "v2" || st.PID == second {
		t.Fatalf("serving process %d version %q, want a new v2 process", st.PID, st.Version)
	}
	ld.waitOK(t, 100)
	waitExit(t, second)
	ld.check(t)
}

// TestProcessAdoptionLeavesReusedPidAlone: a record whose pid now runs
// another program (another start time) is reported, and that program is
// not touched; the daemon side starts a process of its own.
func TestProcessAdoptionLeavesReusedPidAlone(t *testing.T) {
	dir := t.TempDir()
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	id, err := proc.IdentityOf(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id.StartTime-- // the record of an earlier process with the same pid
	b, _ := json.Marshal(record{Identity: id, Version: "v1"})
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("lb-%d.json", id.PID)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := newTestProcess(t, dir, "v1")
	t.Cleanup(func() { stopAll(t, dir, p) })
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := p.Adoption()
	if a.Adopted != 0 || len(a.LeftAlone) != 1 || !strings.Contains(a.LeftAlone[0], "reused") {
		t.Fatalf("adoption %+v, want the record left alone as a reused pid", a)
	}
	if p.PID() == other.Process.Pid || p.PID() == 0 {
		t.Fatalf("serving pid %d", p.PID())
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !proc.Alive(other.Process.Pid) {
		t.Fatal("the program that reused the pid was killed")
	}
}

func waitExit(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for proc.Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getOK(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// TestProcessMetricsCountsAndTargetGroup: the daemon side reads the
// process's metrics and per-target counts over the control socket; the
// counts go on in a process started after a kill; a target group change
// reaches the serving process, is kept by the next one, and a later
// daemon with the same settings adopts the process instead of replacing
// it. An invalid change is refused, naming the field.
func TestProcessMetricsCountsAndTargetGroup(t *testing.T) {
	dir := t.TempDir()
	p, _, _ := startedProcess(t, dir, "v1")
	t.Cleanup(func() { stopAll(t, dir, p) })
	c := lbClient(t, dir)
	url := p.HTTPSURL() + "/"
	for range 10 {
		if _, err := getOK(c, url); err != nil {
			t.Fatal(err)
		}
	}
	m := p.Metrics()
	if m.Stats.Requests < 10 || len(m.Targets) != 2 || m.RequestDuration.Count < 10 {
		t.Fatalf("metrics: %d requests, %d targets, %d durations; want >= 10, 2, >= 10", m.Stats.Requests, len(m.Targets), m.RequestDuration.Count)
	}
	sum := func() (n uint64) {
		for _, ts := range p.Targets() {
			n += ts.Requests
		}
		return n
	}
	time.Sleep(150 * time.Millisecond) // past the cached state report
	if n := sum(); n != 10 {
		t.Fatalf("per-target requests %d, want 10", n)
	}

	cfg := p.cfg.Config
	cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = 300*time.Millisecond, 200*time.Millisecond
	cfg.DeregistrationDelay = 7 * time.Second
	if err := p.SetTargetGroup(cfg); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.HealthCheck.Timeout = time.Second
	if err := p.SetTargetGroup(bad); err == nil || !strings.Contains(err.Error(), "health_check.timeout") {
		t.Fatalf("a timeout above the interval: %v, want an error naming health_check.timeout", err)
	}

	old := p.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for p.PID() == old || p.PID() == 0 || p.State().PID != p.PID() {
		if time.Now().After(deadline) {
			t.Fatal("no new load balancer process 15 s after the kill")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond)
	if n := sum(); n != 10 {
		t.Fatalf("per-target requests after the process was replaced: %d, want the 10 counted before", n)
	}
	if _, err := getOK(c, url); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if n := sum(); n != 11 {
		t.Fatalf("per-target requests after one more: %d, want 11", n)
	}
	if got := p.settings.DeregistrationDelay; got != 7*time.Second {
		t.Fatalf("settings after the restart: deregistration delay %s, want 7s", got)
	}

	// A daemon whose spec asks for the changed settings adopts the process.
	pid := p.PID()
	p.Detach()
	p2 := newTestProcess(t, dir, "v1")
	p2.cfg.Config, p2.settings = cfg, SettingsOf(cfg)
	t.Cleanup(func() { stopAll(t, dir, p2) })
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := p2.Adoption(); a.Adopted != pid || a.Replaced != 0 {
		t.Fatalf("adoption %+v, want %d adopted and kept (same settings)", a, pid)
	}
}
