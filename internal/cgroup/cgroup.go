// Package cgroup puts processes under a CPU quota and a memory limit using Linux control groups (v1 or v2).
//
// Layout: a Manager owns one directory named root (e.g. "haven-eu-west-1") created
// under the daemon's own cgroup in every hierarchy it uses, and each Group is a
// child of it. Nesting under the daemon's own cgroup keeps any limit the daemon
// itself runs under. With cgroup v2 the daemon's cgroup must be able to delegate
// cpu and memory to children (it is the root cgroup, or a delegated subtree).
// When neither v2 with cpu+memory nor v1 cpu and memory hierarchies are usable,
// the Manager warns once and runs processes unlimited (Enabled reports false).
package cgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/proc"
)

// CPUPeriod is the CFS period haven uses for CPU quotas, in microseconds.
const CPUPeriod = 100000

// Limits are the resources one instance may use. Zero means unlimited.
type Limits struct {
	// CPU is the quota in cores (0.25 = a quarter of one core). Default 0: unlimited.
	CPU float64
	// MemoryBytes is the memory limit. Default 0: unlimited.
	MemoryBytes int64
}

// Validate checks that limits are non-negative.
func (l Limits) Validate() error {
	if l.CPU < 0 {
		return fmt.Errorf("cpu: must be ≥ 0, got %v", l.CPU)
	}
	if l.MemoryBytes < 0 {
		return fmt.Errorf("memory: must be ≥ 0, got %d", l.MemoryBytes)
	}
	return nil
}

// cpuQuota returns the CFS quota in microseconds per CPUPeriod for cores, at least 1ms.
func cpuQuota(cores float64) int64 {
	q := int64(cores * CPUPeriod)
	if q < 1000 {
		q = 1000
	}
	return q
}

// Manager creates and sweeps the groups under one root.
type Manager struct {
	root   string
	log    *slog.Logger
	layout layout
	// rootDirs are the root directories: one per v1 controller (key = controller) or one for v2 (key "").
	rootDirs map[string]string
}

// NewManager detects the cgroup layout and creates the root directory (e.g.
// "haven-<region>"). When cgroups are not usable it logs one warning and returns a
// Manager whose groups only track pids (no limits); err is then nil.
func NewManager(root string, logger *slog.Logger) (*Manager, error) {
	if err := validName(root); err != nil {
		return nil, fmt.Errorf("create cgroup manager: root: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "cgroup")
	lay, err := detectSelf()
	if err != nil {
		return nil, fmt.Errorf("create cgroup manager: %w", err)
	}
	m := &Manager{root: root, log: logger, layout: lay, rootDirs: map[string]string{}}
	if err := m.setup(); err != nil {
		m.log.Warn("cgroups not usable: instances run without CPU and memory limits", "reason", err)
		m.layout = layout{Reason: err.Error()}
		m.rootDirs = map[string]string{}
		return m, nil
	}
	if m.layout.Version == 0 {
		m.log.Warn("cgroups not usable: instances run without CPU and memory limits", "reason", m.layout.Reason)
		return m, nil
	}
	m.log.Debug("cgroups ready", "version", m.layout.Version, "dirs", m.rootDirs)
	return m, nil
}

// detectSelf detects the layout of this process's cgroups.
func detectSelf() (layout, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return layout{}, err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return layout{}, err
	}
	return detect(parseMountinfo(bytes.NewReader(mi)), parseProcCgroup(bytes.NewReader(self)), readControllers), nil
}

// Roots lists the roots (names as given to NewManager) that exist next to
// this process's own cgroup and match the glob pattern: the roots of a
// daemon that died without removing them, for example.
func Roots(pattern string) ([]string, error) {
	lay, err := detectSelf()
	if err != nil {
		return nil, fmt.Errorf("find cgroups: %w", err)
	}
	var dirs []string
	switch lay.Version {
	case 2:
		dirs = []string{lay.V2Dir}
	case 1:
		for _, d := range lay.V1Dirs {
			dirs = append(dirs, d)
		}
	}
	seen := map[string]bool{}
	var names []string
	for _, d := range dirs {
		matches, err := filepath.Glob(filepath.Join(d, pattern))
		if err != nil {
			return nil, fmt.Errorf("find cgroups: %w", err)
		}
		for _, m := range matches {
			if n := filepath.Base(m); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

func readControllers(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func (m *Manager) setup() error {
	switch m.layout.Version {
	case 2:
		own := m.layout.V2Dir
		if err := enableV2(own); err != nil {
			return err
		}
		d := filepath.Join(own, m.root)
		if err := mkdir(d); err != nil {
			return err
		}
		if err := enableV2(d); err != nil {
			return err
		}
		m.rootDirs[""] = d
	case 1:
		for c, own := range m.layout.V1Dirs {
			d := filepath.Join(own, m.root)
			if err := mkdir(d); err != nil {
				if c == "cpu" || c == "memory" {
					return err
				}
				m.log.Debug("optional cgroup controller not usable", "controller", c, "err", err)
				continue
			}
			m.rootDirs[c] = d
		}
	}
	return nil
}

// enableV2 turns on the cpu and memory controllers for dir's children (and pids when available).
func enableV2(dir string) error {
	ctrls := readControllers(dir)
	want := "+cpu +memory"
	if slices.Contains(ctrls, "pids") {
		want += " +pids"
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(want), 0); err != nil {
		return fmt.Errorf("enable cgroup controllers in %s: %w", dir, err)
	}
	return nil
}

func mkdir(d string) error {
	if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", d, err)
	}
	return nil
}

func validName(n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00\n") {
		return fmt.Errorf("invalid cgroup name %q", n)
	}
	return nil
}

// Enabled reports whether limits are enforced.
func (m *Manager) Enabled() bool { return m.layout.Version != 0 }

// Version returns 1 or 2 for the cgroup version in use, 0 when disabled.
func (m *Manager) Version() int { return m.layout.Version }

// Create makes (or reuses) the group name under the root and writes its limits.
func (m *Manager) Create(name string, l Limits) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", name, err)
	}
	g := m.group(name)
	if !m.Enabled() {
		return g, nil
	}
	for _, d := range g.dirs {
		if err := mkdir(d); err != nil {
			return nil, err
		}
	}
	if err := g.setLimits(l); err != nil {
		_ = g.Delete(context.Background())
		return nil, err
	}
	return g, nil
}

func (m *Manager) group(name string) *Group {
	g := &Group{name: name, m: m, dirs: map[string]string{}, tracked: map[int]bool{}}
	for c, d := range m.rootDirs {
		g.dirs[c] = filepath.Join(d, name)
	}
	return g
}

// Sweep kills every process in every group under the root and removes the groups.
// The daemon calls it at start to reap what a crashed predecessor left behind.
func (m *Manager) Sweep(ctx context.Context) error {
	names := map[string]bool{}
	for _, d := range m.rootDirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("sweep cgroups: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() {
				names[e.Name()] = true
			}
		}
	}
	var errs []error
	for n := range names {
		if err := m.group(n).Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep cgroups: %w", err)
	}
	return nil
}

// Remove sweeps every group and removes the root directories themselves.
func (m *Manager) Remove(ctx context.Context) error {
	if err := m.Sweep(ctx); err != nil {
		return err
	}
	var errs []error
	for _, d := range m.rootDirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// Group is one cgroup (one instance). With a disabled Manager it only tracks the
// pids added to it, so Procs and Kill still work for those.
type Group struct {
	name string
	m    *Manager
	dirs map[string]string // controller (or "" for v2) → directory

	mu      sync.Mutex
	tracked map[int]bool // disabled mode only
}

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Dir returns the group's directory in the given v1 controller hierarchy ("cpu",
// "memory", ...) or, for v2, with controller "". Empty when not present.
func (g *Group) Dir(controller string) string { return g.dirs[controller] }

func (g *Group) v2() bool { return g.m.layout.Version == 2 }

func (g *Group) write(c, file, val string) error {
	d, ok := g.dirs[c]
	if !ok {
		return fmt.Errorf("write cgroup %s %s: controller %q not available", g.name, file, c)
	}
	if err := os.WriteFile(filepath.Join(d, file), []byte(val), 0); err != nil {
		return fmt.Errorf("write cgroup %s %s: %w", g.name, file, err)
	}
	return nil
}

func (g *Group) read(c, file string) (string, error) {
	d, ok := g.dirs[c]
	if !ok {
		return "", fmt.Errorf("read cgroup %s %s: controller %q not available", g.name, file, c)
	}
	b, err := os.ReadFile(filepath.Join(d, file))
	if err != nil {
		return "", fmt.Errorf("read cgroup %s %s: %w", g.name, file, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (g *Group) setLimits(l Limits) error {
	if g.v2() {
		cpu := "max " + strconv.Itoa(CPUPeriod)
		if l.CPU > 0 {
			cpu = fmt.Sprintf("%d %d", cpuQuota(l.CPU), CPUPeriod)
		}
		if err := g.write("", "cpu.max", cpu); err != nil {
			return err
		}
		mem := "max"
		if l.MemoryBytes > 0 {
			mem = strconv.FormatInt(l.MemoryBytes, 10)
		}
		return g.write("", "memory.max", mem)
	}
	if err := g.write("cpu", "cpu.cfs_period_us", strconv.Itoa(CPUPeriod)); err != nil {
		return err
	}
	quota := "-1"
	if l.CPU > 0 {
		quota = strconv.FormatInt(cpuQuota(l.CPU), 10)
	}
	if err := g.write("cpu", "cpu.cfs_quota_us", quota); err != nil {
		return err
	}
	mem := "-1"
	if l.MemoryBytes > 0 {
		mem = strconv.FormatInt(l.MemoryBytes, 10)
	}
	return g.write("memory", "memory.limit_in_bytes", mem)
}

// Limits reads the limits back from the kernel.
func (g *Group) Limits() (Limits, error) {
	var l Limits
	if !g.m.Enabled() {
		return l, nil
	}
	if g.v2() {
		cpu, err := g.read("", "cpu.max")
		if err != nil {
			return l, err
		}
		if f := strings.Fields(cpu); len(f) == 2 && f[0] != "max" {
			q, _ := strconv.ParseFloat(f[0], 64)
			p, _ := strconv.ParseFloat(f[1], 64)
			if p > 0 {
				l.CPU = q / p
			}
		}
		mem, err := g.read("", "memory.max")
		if err != nil {
			return l, err
		}
		if mem != "max" {
			l.MemoryBytes, _ = strconv.ParseInt(mem, 10, 64)
		}
		return l, nil
	}
	q, err := g.read("cpu", "cpu.cfs_quota_us")
	if err != nil {
		return l, err
	}
	p, err := g.read("cpu", "cpu.cfs_period_us")
	if err != nil {
		return l, err
	}
	qf, _ := strconv.ParseFloat(q, 64)
	pf, _ := strconv.ParseFloat(p, 64)
	if qf > 0 && pf > 0 {
		l.CPU = qf / pf
	}
	mem, err := g.read("memory", "memory.limit_in_bytes")
	if err != nil {
		return l, err
	}
	mb, _ := strconv.ParseInt(mem, 10, 64)
	// v1 reports "unlimited" as a huge page-rounded number.
	if mb > 0 && mb < 1<<62 {
		l.MemoryBytes = mb
	}
	return l, nil
}

// Add moves pid (the whole process, all its threads) into the group.
func (g *Group) Add(pid int) error {
	if !g.m.Enabled() {
		g.mu.Lock()
		g.tracked[pid] = true
		g.mu.Unlock()
		return nil
	}
	for c := range g.dirs {
		if err := g.write(c, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("add pid %d: %w", pid, err)
		}
	}
	return nil
}

// Start starts cmd inside the group, so that the process and everything it
// forks is in the group from its first instruction.
//
// With cgroup v2 the child is created directly in the group (clone3
// CLONE_INTO_CGROUP via SysProcAttr.UseCgroupFD). With v1 the command is started
// through a /bin/sh trampoline that blocks reading a pipe: the pid is written to
// cgroup.procs, then the pipe is released and the shell execs the real program
// (same pid). The program therefore sees $0 as cmd.Path rather than a custom
// cmd.Args[0]. With a disabled Manager the command is started and its pid tracked.
func (g *Group) Start(cmd *exec.Cmd) error { return g.StartWith(cmd, (*exec.Cmd).Start) }

// StartWith is Start with start in place of exec.Cmd.Start, for a caller
// that must start the process its own way too (inside a network namespace:
// vpc.Namespace.Start). start must call cmd.Start, keeping the
// SysProcAttr fields it finds set.
func (g *Group) StartWith(cmd *exec.Cmd, start func(*exec.Cmd) error) error {
	if cmd.Err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, cmd.Err)
	}
	switch {
	case g.v2():
		fd, err := syscall.Open(g.dirs[""], syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", g.name, err)
		}
		defer syscall.Close(fd)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		if err := start(cmd); err != nil {
			return fmt.Errorf("start %s in cgroup %s: %w", cmd.Path, g.name, err)
		}
		return nil
	case g.m.Enabled():
		return g.startV1(cmd, start)
	default:
		if err := start(cmd); err != nil {
			return fmt.Errorf("start %s: %w", cmd.Path, err)
		}
		return g.Add(cmd.Process.Pid)
	}
}

// shellPath is the trampoline shell for cgroup v1 starts.
const shellPath = "/bin/sh"

func (g *Group) startV1(cmd *exec.Cmd, start func(*exec.Cmd) error) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start %s in cgroup %s: %w", cmd.Path, g.name, err)
	}
	defer r.Close()
	defer w.Close()
	fd := 3 + len(cmd.ExtraFiles)
	script := fmt.Sprintf(`read -r _ <&%[1]d || exit 125; exec %[1]d<&-; exec "$0" "$@"`, fd)
	orig := cmd.Args
	args := []string{"sh", "-c", script, cmd.Path}
	if len(orig) > 1 {
		args = append(args, orig[1:]...)
	}
	cmd.Path, cmd.Args = shellPath, args
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	defer func() { cmd.ExtraFiles = cmd.ExtraFiles[:len(cmd.ExtraFiles)-1] }()
	if err := start(cmd); err != nil {
		return fmt.Errorf("start %s in cgroup %s: %w", args[3], g.name, err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("start %s in cgroup %s: %w", args[3], g.name, err)
	}
	if _, err := w.Write([]byte("go\n")); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("start %s in cgroup %s: release trampoline: %w", args[3], g.name, err)
	}
	return nil
}

// Procs lists the pids in the group.
func (g *Group) Procs() ([]int, error) {
	if !g.m.Enabled() {
		g.mu.Lock()
		defer g.mu.Unlock()
		var out []int
		for p := range g.tracked {
			if syscall.Kill(p, 0) == nil && !isZombie(p) {
				out = append(out, p)
			} else {
				delete(g.tracked, p)
			}
		}
		return out, nil
	}
	c := "cpu"
	if g.v2() {
		c = ""
	}
	s, err := g.read(c, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(s) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// isZombie reports whether pid has exited (a zombie, or gone).
func isZombie(pid int) bool { return !proc.Alive(pid) }

// CanFreeze reports whether Freeze and Thaw are supported.
func (g *Group) CanFreeze() bool {
	if g.v2() {
		_, err := os.Stat(filepath.Join(g.dirs[""], "cgroup.freeze"))
		return err == nil
	}
	_, ok := g.dirs["freezer"]
	return ok && g.m.Enabled()
}

// Freeze stops every process in the group (they cannot run, nor handle signals,
// until Thaw). It waits until the kernel reports the group frozen.
func (g *Group) Freeze(ctx context.Context) error { return g.setFrozen(ctx, true) }

// Thaw resumes a frozen group.
func (g *Group) Thaw(ctx context.Context) error { return g.setFrozen(ctx, false) }

func (g *Group) setFrozen(ctx context.Context, frozen bool) error {
	if !g.CanFreeze() {
		return fmt.Errorf("freeze cgroup %s: %w", g.name, errors.ErrUnsupported)
	}
	var file, val, want string
	c := "freezer"
	if g.v2() {
		c, file, val = "", "cgroup.freeze", "0"
		if frozen {
			val = "1"
		}
	} else {
		file, val, want = "freezer.state", "THAWED", "THAWED"
		if frozen {
			val, want = "FROZEN", "FROZEN"
		}
	}
	if err := g.write(c, file, val); err != nil {
		return err
	}
	for {
		var done bool
		if g.v2() {
			ev, err := g.read("", "cgroup.events")
			if err != nil {
				return err
			}
			done = strings.Contains(ev, "frozen "+val)
		} else {
			st, err := g.read("freezer", "freezer.state")
			if err != nil {
				return err
			}
			done = st == want
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("freeze cgroup %s to %s: %w", g.name, val, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to every process in the group and waits until the group is
// empty. Where a freezer is available the group is frozen first, so nothing can
// fork away between listing and killing.
func (g *Group) Kill(ctx context.Context) error {
	if g.v2() {
		if _, err := os.Stat(filepath.Join(g.dirs[""], "cgroup.kill")); err == nil {
			if err := g.write("", "cgroup.kill", "1"); err != nil {
				return err
			}
			return g.waitEmpty(ctx)
		}
	}
	frozen := false
	if g.CanFreeze() {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		frozen = g.Freeze(fctx) == nil
		cancel()
	}
	procs, err := g.Procs()
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", g.name, err)
	}
	for _, p := range procs {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill cgroup %s pid %d: %w", g.name, p, err)
		}
	}
	if frozen || g.CanFreeze() {
		// Thaw even if Freeze timed out half-way: frozen tasks cannot die.
		if err := g.Thaw(ctx); err != nil {
			return fmt.Errorf("kill cgroup %s: %w", g.name, err)
		}
	}
	return g.waitEmpty(ctx)
}

func (g *Group) waitEmpty(ctx context.Context) error {
	for {
		procs, err := g.Procs()
		if err != nil {
			return fmt.Errorf("kill cgroup %s: %w", g.name, err)
		}
		if len(procs) == 0 {
			return nil
		}
		for _, p := range procs {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill cgroup %s: %d processes left: %w", g.name, len(procs), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Delete kills whatever is left in the group and removes it.
func (g *Group) Delete(ctx context.Context) error {
	if !g.m.Enabled() {
		return g.Kill(ctx)
	}
	exists := false
	for _, d := range g.dirs {
		if _, err := os.Stat(d); err == nil {
			exists = true
		}
	}
	if !exists {
		return nil
	}
	if err := g.Kill(ctx); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", g.name, err)
	}
	var errs []error
	for _, d := range g.dirs {
		if err := removeTree(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("delete cgroup %s: %w", g.name, err))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a cgroup directory and any child cgroups, bottom-up.
// cgroup directories can only be removed with rmdir, and rmdir may briefly fail
// with EBUSY while the last processes exit.
func removeTree(ctx context.Context, d string) error {
	ents, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(ctx, filepath.Join(d, e.Name())); err != nil {
				return err
			}
		}
	}
	for {
		err := syscall.Rmdir(d)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("rmdir %s: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rmdir %s: %w (%w)", d, err, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stats is a sample of a group's resource counters.
type Stats struct {
	// CPUUsage is the total CPU time used by the group.
	CPUUsage time.Duration
	// NrPeriods is how many CFS periods had runnable tasks.
	NrPeriods uint64
	// NrThrottled is how many periods the group was throttled in.
	NrThrottled uint64
	// Throttled is the total time the group was throttled.
	Throttled time.Duration
	// MemoryBytes is the current memory usage.
	MemoryBytes int64
}

// Stats reads the group's CPU and memory counters.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	if !g.m.Enabled() {
		return s, fmt.Errorf("read cgroup %s stats: %w", g.name, errors.ErrUnsupported)
	}
	c := "cpu"
	if g.v2() {
		c = ""
	}
	st, err := g.read(c, "cpu.stat")
	if err != nil {
		return s, err
	}
	kv := parseKV(st)
	s.NrPeriods, s.NrThrottled = kv["nr_periods"], kv["nr_throttled"]
	if g.v2() {
		s.CPUUsage = time.Duration(kv["usage_usec"]) * time.Microsecond
		s.Throttled = time.Duration(kv["throttled_usec"]) * time.Microsecond
		if m, err := g.read("", "memory.current"); err == nil {
			s.MemoryBytes, _ = strconv.ParseInt(m, 10, 64)
		}
		return s, nil
	}
	s.Throttled = time.Duration(kv["throttled_time"])
	if u, err := g.read("cpuacct", "cpuacct.usage"); err == nil {
		n, _ := strconv.ParseInt(u, 10, 64)
		s.CPUUsage = time.Duration(n)
	}
	if m, err := g.read("memory", "memory.usage_in_bytes"); err == nil {
		s.MemoryBytes, _ = strconv.ParseInt(m, 10, 64)
	}
	return s, nil
}

func parseKV(s string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			out[f[0]], _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return out
}

// CPUAccounting returns nil when the CPU time of each group can be read
// (CPUUsage), or says why not: cgroups are not usable, or (v1) the cpuacct
// controller is not mounted.
func (m *Manager) CPUAccounting() error {
	switch m.layout.Version {
	case 2:
		return nil // cpu.stat's usage_usec is always there in v2
	case 1:
		if _, ok := m.rootDirs["cpuacct"]; ok {
			return nil
		}
		return errors.New("cgroup v1 without the cpuacct controller: no per-instance CPU accounting")
	}
	return fmt.Errorf("cgroups are not usable: %s", m.layout.Reason)
}

// CPUUsage returns the CPU time the processes of group name have used since
// it was created: cpu.stat's usage_usec (v2) or cpuacct.usage (v1). It reads
// one small file and allocates little, so a sampler can call it for every
// instance every second.
func (m *Manager) CPUUsage(name string) (time.Duration, error) {
	if err := m.CPUAccounting(); err != nil {
		return 0, fmt.Errorf("read cpu usage of cgroup %s: %w", name, err)
	}
	if m.layout.Version == 2 {
		b, err := os.ReadFile(filepath.Join(m.rootDirs[""], name, "cpu.stat"))
		if err != nil {
			return 0, fmt.Errorf("read cpu usage of cgroup %s: %w", name, err)
		}
		s := string(b)
		i := strings.Index(s, "usage_usec ")
		if i < 0 {
			return 0, fmt.Errorf("read cpu usage of cgroup %s: no usage_usec in cpu.stat", name)
		}
		s = s[i+len("usage_usec "):]
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			s = s[:j]
		}
		us, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read cpu usage of cgroup %s: %w", name, err)
		}
		return time.Duration(us) * time.Microsecond, nil
	}
	b, err := os.ReadFile(filepath.Join(m.rootDirs["cpuacct"], name, "cpuacct.usage"))
	if err != nil {
		return 0, fmt.Errorf("read cpu usage of cgroup %s: %w", name, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read cpu usage of cgroup %s: %w", name, err)
	}
	return time.Duration(ns), nil
}

// Stats reads the CPU and memory counters of the group called name (an
// instance's id): a few small files, no lock of the fleet, so the metrics
// endpoint can read every instance at each scrape.
func (m *Manager) Stats(name string) (Stats, error) {
	if err := validName(name); err != nil {
		return Stats{}, err
	}
	return m.group(name).Stats()
}
