package pgha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haven-platform/haven/internal/proc"
)

// ErrNotInstalled is returned when the PostgreSQL 15 binaries are missing.
var ErrNotInstalled = errors.New("postgresql 15 binaries not found: run `apt-get install postgresql-15`")

// instance is one node's server process, owned by the controller: postgres
// runs as a child in its own process group, with Pdeathsig SIGKILL, so the
// controller can fence it (SIGKILL or SIGSTOP the group) for real.
type instance struct {
	node   Node
	binDir string
	uid    int
	gid    int
	log    *slog.Logger
	certs  Certificates // nil: no TLS (a single node)
	// spawn starts the postmaster where the node lives (Config.Spawn);
	// powered reports whether its zone has power. Both are set by New.
	spawn   func(*exec.Cmd) error
	powered func() bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the postmaster has exited

	// pidv is the running postmaster's pid (0 when none), for status
	// readers that must not wait on mu.
	pidv atomic.Int64
}

// livePid is the running postmaster's pid, 0 when none; it never blocks.
func (in *instance) livePid() int { return int(in.pidv.Load()) }

func newInstance(n Node, binDir string, log *slog.Logger) (*instance, error) {
	if _, err := os.Stat(filepath.Join(binDir, "postgres")); err != nil {
		return nil, fmt.Errorf("find postgres in %s: %w", binDir, ErrNotInstalled)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("look up OS user postgres: %w (run `apt-get install postgresql-15`)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if n.Logger != nil {
		log = n.Logger
	}
	return &instance{node: n, binDir: binDir, uid: uid, gid: gid, log: log.With("node", n.Name, "zone", n.Zone)}, nil
}

func (in *instance) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		a.Credential = &syscall.Credential{Uid: uint32(in.uid), Gid: uint32(in.gid)}
	}
	return a
}

// runUID is the OS user the server and its tools run as.
func (in *instance) runUID() int {
	if os.Geteuid() == 0 {
		return in.uid
	}
	return os.Geteuid()
}

func (in *instance) env() []string {
	return []string{"PATH=" + in.binDir + ":/usr/bin:/bin", "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "HOME=" + in.node.DataDir, "PGAPPNAME=haven"}
}

// tool runs a PostgreSQL client or admin program as the postgres user and
// returns its combined output in the error when it fails.
func (in *instance) tool(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(in.binDir, name), args...)
	cmd.SysProcAttr = in.sysProcAttr()
	cmd.Env = in.env()
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("run %s: %w: %s", name, err, strings.TrimSpace(lastLines(out.String(), 5)))
	}
	return out.String(), nil
}

// prepareDirs creates the parent of DataDir (0711: the postgres user
// traverses it, nobody lists it) and SocketDir (0700, postgres's).
func (in *instance) prepareDirs() error {
	parent := filepath.Dir(filepath.Clean(in.node.DataDir))
	for _, d := range []string{parent, in.node.SocketDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		return fmt.Errorf("chmod %s: %w", parent, err)
	}
	if err := os.Chmod(in.node.SocketDir, 0o700); err != nil {
		return fmt.Errorf("chmod socket dir: %w", err)
	}
	if err := in.chown(in.node.SocketDir); err != nil {
		return err
	}
	return nil
}

func (in *instance) chown(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.Chown(path, in.uid, in.gid); err != nil {
		return fmt.Errorf("chown %s to postgres: %w", path, err)
	}
	return nil
}

// initialized reports whether DataDir holds a cluster.
func (in *instance) initialized() bool {
	_, err := os.Stat(filepath.Join(in.node.DataDir, "PG_VERSION"))
	return err == nil
}

// initdb creates a fresh cluster in DataDir.
func (in *instance) initdb(ctx context.Context) error {
	if err := in.prepareDirs(); err != nil {
		return err
	}
	if err := os.MkdirAll(in.node.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := in.chown(in.node.DataDir); err != nil {
		return err
	}
	if _, err := in.tool(ctx, "initdb", "-D", in.node.DataDir, "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
		"--auth-local=peer", "--auth-host=reject"); err != nil { // configure writes the real pg_hba.conf before any start
		return fmt.Errorf("initdb %s: %w", in.node.Name, err)
	}
	in.log.Info("initialized data directory", "data_dir", in.node.DataDir)
	return nil
}

// writeFile writes a file in DataDir owned by postgres.
func (in *instance) writeFile(name, content string) error {
	p := filepath.Join(in.node.DataDir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return in.chown(p)
}

// configure writes postgresql.auto.conf, pg_hba.conf, pg_ident.conf, the
// node's TLS files and the standby signal for this run. Base backups and pg_rewind copy the other node's files, so
// every start rewrites them: each node's replication settings are its own.
func (in *instance) configure(rc runConfig) error {
	if err := in.writeFile("postgresql.auto.conf", autoConf(serverSettings(in.node, rc))); err != nil {
		return err
	}
	if err := in.writeFile("pg_hba.conf", HBA(rc.hba)); err != nil {
		return err
	}
	if err := in.writeFile("pg_ident.conf", Ident(rc.hba)); err != nil {
		return err
	}
	if rc.tls {
		if err := in.writeTLS(); err != nil {
			return err
		}
	}
	sig := filepath.Join(in.node.DataDir, "standby.signal")
	if rc.standby {
		return in.writeFile("standby.signal", "")
	}
	if err := os.Remove(sig); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove standby.signal: %w", err)
	}
	return nil
}

// hasStandbySignal reports whether the data directory was last a standby.
func (in *instance) hasStandbySignal() bool {
	_, err := os.Stat(filepath.Join(in.node.DataDir, "standby.signal"))
	return err == nil
}

// killStale SIGKILLs what an earlier server on this data directory left
// running: its postmaster and every backend and auxiliary process (see
// KillLeftovers: they can outlive a killed postmaster and hold its shared
// memory). It runs before every start, when no server of this controller
// runs on the data directory.
func (in *instance) killStale() {
	killed := killServer(in.node.DataDir, in.runUID(), 10*time.Second)
	if len(killed) > 0 {
		in.log.Warn("killed the processes of an earlier server on the data directory", "pids", killed)
	}
	b, err := os.ReadFile(filepath.Join(in.node.DataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pm <= 1 || !proc.IsZombie(pm) {
		return // PostgreSQL itself tells a stale lock file from a live server
	}
	if uid, err := proc.UID(pm); err != nil || uid != in.runUID() {
		return
	}
	// Orphans are reparented to PID 1, which may never reap them (a
	// container init). A zombie holds nothing, but PostgreSQL's kill(pid, 0)
	// check would take it for a live postmaster.
	in.log.Warn("the earlier postmaster is a zombie; removing its postmaster.pid", "pid", pm)
	_ = os.Remove(filepath.Join(in.node.DataDir, "postmaster.pid"))
	locks, _ := filepath.Glob(filepath.Join(in.node.SocketDir, ".s.PGSQL.*.lock"))
	for _, l := range locks {
		_ = os.Remove(l)
	}
}

// start launches the postmaster with rc and waits until it answers SELECT 1.
func (in *instance) start(ctx context.Context, rc runConfig) error {
	if in.running() {
		return fmt.Errorf("start %s: already running", in.node.Name)
	}
	if in.powered != nil && !in.powered() {
		return fmt.Errorf("start %s: zone %s has no power", in.node.Name, in.node.Zone)
	}
	if err := in.prepareDirs(); err != nil {
		return err
	}
	in.killStale()
	if err := in.configure(rc); err != nil {
		return fmt.Errorf("configure %s: %w", in.node.Name, err)
	}
	logf, err := os.OpenFile(in.node.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	cmd := exec.Command(filepath.Join(in.binDir, "postgres"), "-D", in.node.DataDir)
	cmd.SysProcAttr = in.sysProcAttr()
	cmd.Env = in.env()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	spawn := in.spawn
	if spawn == nil {
		spawn = (*exec.Cmd).Start
	}
	if err := spawn(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres %s: %w", in.node.Name, err)
	}
	logf.Close()
	done := make(chan struct{})
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	in.pidv.Store(int64(cmd.Process.Pid))
	go func() {
		err := cmd.Wait()
		in.pidv.CompareAndSwap(int64(cmd.Process.Pid), 0)
		in.log.Info("postmaster exited", "pid", cmd.Process.Pid, "status", fmt.Sprint(err))
		// Reap whatever the postmaster left in its group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(done)
	}()
	role := "primary"
	if rc.standby {
		role = "standby"
	}
	in.log.Info("started postmaster", "pid", cmd.Process.Pid, "role", role, "addr", in.node.Addr())
	if err := in.waitReady(ctx, done); err != nil {
		_ = in.kill()
		return fmt.Errorf("wait for %s to accept connections: %w (log %s: %s)", in.node.Name, err, in.node.logFile(), tailFile(in.node.logFile(), 3))
	}
	return nil
}

func (in *instance) waitReady(ctx context.Context, done <-chan struct{}) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := in.connect(cctx)
		if err == nil {
			_, err = c.Exec(cctx, "SELECT 1")
			c.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-done:
			return errors.New("postmaster exited during startup")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// connect opens an admin connection: superuser postgres over the unix socket.
func (in *instance) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(in.node.AdminDSN())
	if err != nil {
		return nil, fmt.Errorf("parse admin dsn: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		cfg.ConnectTimeout = time.Until(dl)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", in.node.Name, err)
	}
	return c, nil
}

// exec runs admin SQL on the node.
func (in *instance) exec(ctx context.Context, sql string, args ...any) error {
	c, err := in.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("exec on %s: %w", in.node.Name, err)
	}
	return nil
}

func (in *instance) running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done == nil {
		return false
	}
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// pid is the postmaster pid (also its process group id), 0 when not running.
func (in *instance) pid() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || in.done == nil {
		return 0
	}
	select {
	case <-in.done:
		return 0
	default:
		return in.cmd.Process.Pid
	}
}

// exited returns a channel closed when the current postmaster has exited
// (already closed when none runs).
func (in *instance) exited() <-chan struct{} {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return in.done
}

// signal sends sig to the postmaster's whole process group.
func (in *instance) signal(sig syscall.Signal) error {
	pid := in.pid()
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s group %d: %w", in.node.Name, pid, err)
	}
	return nil
}

// signalAll sends sig to every process of the server. PostgreSQL makes each
// child (backend, walsender, ...) the leader of its own process group, so
// signalling the postmaster's group is not enough: the postmaster is stopped
// first (it cannot fork while we look), then every descendant and its group,
// then the postmaster's group.
func (in *instance) signalAll(sig syscall.Signal) error {
	pid := in.pid()
	if pid == 0 {
		return nil
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGSTOP {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	for _, k := range proc.Descendants(pid) {
		_ = syscall.Kill(-k, sig)
		_ = syscall.Kill(k, sig)
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s group %d: %w", in.node.Name, pid, err)
	}
	return nil
}

// kill fences the node: SIGKILL to every process of the server, then wait
// for the postmaster's exit.
func (in *instance) kill() error {
	if err := in.signalAll(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-in.exited():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill %s: postmaster did not exit", in.node.Name)
	}
}

// stop does a fast shutdown (SIGINT), and SIGKILLs the group when ctx ends first.
func (in *instance) stop(ctx context.Context) error {
	pid := in.pid()
	if pid == 0 {
		return nil
	}
	_ = in.signalAll(syscall.SIGCONT) // a frozen server cannot shut down
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", in.node.Name, err)
	}
	select {
	case <-in.exited():
		return nil
	case <-ctx.Done():
		in.log.Warn("fast shutdown timed out, killing", "pid", pid)
		return in.kill()
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return lastLines(string(b), n)
}
