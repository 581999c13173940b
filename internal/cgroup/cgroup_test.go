package cgroup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/testkit"
)

// newTestManager returns a Manager under a unique root and removes it at the end.
// It fails (does not skip) when cgroups are not usable: this suite runs as root on
// a host with cgroups.
func newTestManager(t *testing.T) *Manager {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	m, err := NewManager("haven-test-"+hex.EncodeToString(b), testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Enabled() {
		t.Fatalf("cgroups not usable on this host (%s); these tests need root and cgroups", m.layout.Reason)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Remove(ctx); err != nil {
			t.Errorf("remove manager: %v", err)
		}
		for _, d := range m.rootDirs {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("root %s left behind", d)
			}
		}
	})
	return m
}

func startIn(t *testing.T, g *Group, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd
}

func TestLimitsReadBack(t *testing.T) {
	m := newTestManager(t)
	want := Limits{CPU: 0.25, MemoryBytes: 64 << 20}
	g, err := m.Create("i-limits", want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Limits()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if m.Version() == 1 {
		q, _ := os.ReadFile(filepath.Join(g.Dir("cpu"), "cpu.cfs_quota_us"))
		if strings.TrimSpace(string(q)) != "25000" {
			t.Errorf("cpu.cfs_quota_us got %q, want 25000", q)
		}
	}
	// Unlimited is written back as unlimited.
	g2, err := m.Create("i-unlimited", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := g2.Limits(); got != (Limits{}) {
		t.Errorf("unlimited: got %+v", got)
	}
	if _, err := m.Create("a/b", Limits{}); err == nil {
		t.Error("name with slash: got nil error")
	}
	if _, err := m.Create("neg", Limits{CPU: -1}); err == nil {
		t.Error("negative cpu: got nil error")
	}
}

func TestProcsAndKill(t *testing.T) {
	m := newTestManager(t)
	g, err := m.Create("i-procs", Limits{CPU: 0.5, MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cmd := startIn(t, g, "sleep", "60")
	// A child forked by the process is in the group too.
	sh := startIn(t, g, "sh", "-c", "sleep 60 & wait")
	var procs []int
	for range 200 {
		procs, err = g.Procs()
		if err != nil {
			t.Fatal(err)
		}
		if len(procs) >= 3 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Contains(procs, cmd.Process.Pid) || !slices.Contains(procs, sh.Process.Pid) || len(procs) != 3 {
		t.Fatalf("procs got %v, want sleep %d, sh %d and its child", procs, cmd.Process.Pid, sh.Process.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	procs, _ = g.Procs()
	if len(procs) != 0 {
		t.Errorf("after Kill procs got %v, want none", procs)
	}
	for _, p := range []int{cmd.Process.Pid, sh.Process.Pid} {
		if syscall.Kill(p, 0) == nil && !isZombie(p) {
			t.Errorf("pid %d alive after Kill", p)
		}
	}
	if err := g.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s still exists after Delete", d)
		}
	}
}

// TestStartForkInGroup checks there is no window: a child forked by the very
// first instruction of the program is in the group too.
func TestStartForkInGroup(t *testing.T) {
	m := newTestManager(t)
	g, err := m.Create("i-fork", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $$ $0 \"$1\" > "+out+"; wait", "zero", "one arg")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	var procs []int
	for range 200 {
		procs, _ = g.Procs()
		if len(procs) == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(procs) != 2 || !slices.Contains(procs, cmd.Process.Pid) {
		t.Fatalf("procs got %v, want sh %d and its child", procs, cmd.Process.Pid)
	}
	// The shell forks sleep before it writes the file: wait for the line.
	var b []byte
	for range 200 {
		if b, _ = os.ReadFile(out); strings.HasSuffix(string(b), "\n") {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, want := strings.TrimSpace(string(b)), fmt.Sprintf("%d zero one arg", cmd.Process.Pid); got != want {
		t.Errorf("program saw %q, want %q (same pid, args kept)", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFreezeThaw(t *testing.T) {
	m := newTestManager(t)
	g, err := m.Create("i-freeze", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !g.CanFreeze() {
		t.Fatal("freezer not available on this host")
	}
	startIn(t, g, "sleep", "60")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Version() == 1 {
		st, _ := g.read("freezer", "freezer.state")
		if st != "FROZEN" {
			t.Errorf("state got %q, want FROZEN", st)
		}
	}
	// Kill works on a frozen group (it thaws so the processes can die).
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if procs, _ := g.Procs(); len(procs) != 0 {
		t.Errorf("procs got %v, want none", procs)
	}
}

func TestSweep(t *testing.T) {
	m := newTestManager(t)
	var cmds []*exec.Cmd
	for _, n := range []string{"left-1", "left-2"} {
		g, err := m.Create(n, Limits{CPU: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, startIn(t, g, "sleep", "60"))
	}
	// A second manager over the same root, as after a daemon restart.
	m2, err := NewManager(m.root, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m2.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for c, d := range m.rootDirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("%s: group %s left after Sweep", c, e.Name())
			}
		}
	}
	for _, cmd := range cmds {
		if err := syscall.Kill(cmd.Process.Pid, 0); err == nil && !isZombie(cmd.Process.Pid) {
			t.Errorf("pid %d alive after Sweep", cmd.Process.Pid)
		}
	}
}

func TestCPUQuotaThrottles(t *testing.T) {
	m := newTestManager(t)
	g, err := m.Create("i-busy", Limits{CPU: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, g, "sh", "-c", "while :; do :; done")
	var st Stats
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err = g.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.NrThrottled > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.NrThrottled == 0 {
		t.Fatalf("nr_throttled got 0 after a busy loop under 0.1 CPU (stats %+v)", st)
	}
	if st.CPUUsage <= 0 {
		t.Errorf("cpu usage got %v, want > 0", st.CPUUsage)
	}
	// The manager reads the same counters by the group's name.
	byName, err := m.Stats("i-busy")
	if err != nil {
		t.Fatal(err)
	}
	if byName.CPUUsage < st.CPUUsage || byName.MemoryBytes <= 0 {
		t.Errorf("Manager.Stats = %+v after Group.Stats = %+v: want CPU time at least as high and some memory", byName, st)
	}
	if _, err := m.Stats("../etc"); err == nil {
		t.Error("Manager.Stats accepted a name with a slash")
	}
}

// TestCPUUsageMeasuresTheQuota: a busy loop under a 0.1-CPU quota uses about
// 0.1 s of CPU per second, as CPUUsage reads it (what the scaler's sampler
// turns into CPU utilisation).
func TestCPUUsageMeasuresTheQuota(t *testing.T) {
	m := newTestManager(t)
	if err := m.CPUAccounting(); err != nil {
		t.Fatalf("no CPU accounting on this host: %v", err)
	}
	g, err := m.Create("i-usage", Limits{CPU: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	before, err := m.CPUUsage("i-usage")
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, g, "sh", "-c", "while :; do :; done")
	t0 := time.Now()
	time.Sleep(time.Second)
	after, err := m.CPUUsage("i-usage")
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(t0)
	used := after - before
	// The quota caps it at 0.1 × wall (plus one CFS period of slack); a
	// busy loop on a shared machine gets some of it.
	if used <= 0 || used > wall/10+cpuQuotaSlack {
		t.Errorf("used %s of CPU in %s under a 0.1 quota, want (0, %s]", used, wall, wall/10+cpuQuotaSlack)
	}
	if _, err := m.CPUUsage("i-missing"); err == nil {
		t.Error("CPUUsage of a group that does not exist succeeded")
	}
}

// cpuQuotaSlack is one CFS period: a group may run its quota at the end of
// one period and the start of the next.
const cpuQuotaSlack = CPUPeriod * time.Microsecond

func TestDisabledManagerTracksPids(t *testing.T) {
	m := &Manager{root: "x", log: testkit.Logger(t), layout: layout{Reason: "test"}, rootDirs: map[string]string{}}
	g, err := m.Create("i-x", Limits{CPU: 1})
	if err != nil {
		t.Fatal(err)
	}
	if m.CPUAccounting() == nil {
		t.Error("a disabled manager claims CPU accounting")
	}
	cmd := startIn(t, g, "sleep", "60")
	procs, _ := g.Procs()
	if !slices.Equal(procs, []int{cmd.Process.Pid}) {
		t.Fatalf("procs got %v, want [%d]", procs, cmd.Process.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if procs, _ := g.Procs(); len(procs) != 0 {
		t.Errorf("after Kill procs got %v", procs)
	}
}

// BenchmarkCPUUsage measures what the scaler's sampler pays per instance
// per second to read its CPU time: one Manager.CPUUsage of a real group.
func BenchmarkCPUUsage(b *testing.B) {
	rb := make([]byte, 4)
	rand.Read(rb)
	m, err := NewManager("haven-bench-"+hex.EncodeToString(rb), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.CPUAccounting(); err != nil {
		b.Skipf("no CPU accounting here: %v", err)
	}
	defer m.Remove(context.Background())
	if _, err := m.Create("i-bench", Limits{CPU: 0.05}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if _, err := m.CPUUsage("i-bench"); err != nil {
			b.Fatal(err)
		}
	}
}
