package backup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Restore errors callers branch on.
var (
	// ErrNoBackup: the repository holds no backup yet.
	ErrNoBackup = errors.New("the repository holds no backup")
	// ErrBeforeFirstBackup: the target time is before the end of the oldest backup.
	ErrBeforeFirstBackup = errors.New("target time is before the end of the oldest backup")
	// ErrAfterLatestRestorable: the target time is after the newest archived commit.
	ErrAfterLatestRestorable = errors.New("target time is after the latest restorable time")
)

// RestoreOptions says what to restore and where the new server runs.
type RestoreOptions struct {
	// TargetTime is the point in time to restore to: every transaction
	// committed at or before it is kept, every later one is not
	// (recovery_target_inclusive = on, compared with the commit record's
	// timestamp, microsecond resolution). Required.
	TargetTime time.Time
	// DataDir is a NEW directory for the restored cluster: it must not exist
	// or be empty, and must not be a live node's. Required, absolute.
	DataDir string
	// ListenAddr and Port are where the restored server listens over TCP.
	// Default 127.0.0.1 and a port the caller must choose (required).
	ListenAddr netip.Addr
	Port       int
	// SocketDir holds the restored server's unix socket. Default DataDir + ".sock".
	SocketDir string
	// LogFile receives the restored server's log. Default DataDir + ".log".
	LogFile string
}

// RestoredServer is a throwaway PostgreSQL running on a restored data
// directory. It never archives into the repository and is not a standby of
// anything. Stop it when done; its data directory is left for the caller.
type RestoredServer struct {
	// DataDir, SocketDir, ListenAddr and Port describe the server.
	DataDir    string
	SocketDir  string
	ListenAddr netip.Addr
	Port       int
	// LogFile is the server's log.
	LogFile string
	// Backup is the label of the backup set the restore started from.
	Backup string
	// Target is the recovery target time.
	Target time.Time
	// LastReplayed is the commit time of the last transaction replayed
	// (zero when recovery replayed none).
	LastReplayed time.Time

	cmd  *exec.Cmd
	done chan struct{}
}

// AdminDSN connects as the postgres superuser over the unix socket.
func (s *RestoredServer) AdminDSN() string {
	return "host=" + s.SocketDir + " port=" + strconv.Itoa(s.Port) + " user=postgres dbname=postgres sslmode=disable"
}

// DSN connects over TCP as user to database.
func (s *RestoredServer) DSN(user, database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.ListenAddr, s.Port, user, database)
}

// Pid is the postmaster's pid (its process group), 0 once it has exited.
func (s *RestoredServer) Pid() int {
	select {
	case <-s.done:
		return 0
	default:
		return s.cmd.Process.Pid
	}
}

// Stop shuts the server down (fast shutdown, SIGKILL of its process group
// when ctx ends first). It is safe to call more than once.
func (s *RestoredServer) Stop(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stop restored server %d: did not exit", s.cmd.Process.Pid)
	}
}

// pgTime formats t for recovery_target_time (microseconds, UTC).
func pgTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000") + "+00"
}

// chooseSet returns the newest backup that ended before t.
func chooseSet(l Listing, t time.Time) (BackupInfo, error) {
	if len(l.Backups) == 0 {
		return BackupInfo{}, ErrNoBackup
	}
	for i := len(l.Backups) - 1; i >= 0; i-- {
		if !l.Backups[i].Stop.Add(time.Second).After(t) {
			return l.Backups[i], nil
		}
	}
	return BackupInfo{}, fmt.Errorf("restore to %s: %w: the earliest restorable time is %s",
		t.UTC().Format(time.RFC3339Nano), ErrBeforeFirstBackup, l.EarliestRestorable.Format(time.RFC3339))
}

// Restore restores the repository to opts.TargetTime into a new data
// directory and starts a throwaway PostgreSQL on it, as the postgres user,
// with its own port and socket. It returns once recovery has reached the
// target and the server has been promoted. The live cluster is not touched:
// the restored server has archiving off, no synchronous standbys, no
// primary_conninfo and no standby.signal.
func (m *Manager) Restore(ctx context.Context, opts RestoreOptions) (*RestoredServer, error) {
	if opts.TargetTime.IsZero() {
		return nil, errors.New("restore: target time required")
	}
	if !filepath.IsAbs(opts.DataDir) {
		return nil, fmt.Errorf("restore: data dir must be an absolute path, got %q", opts.DataDir)
	}
	opts.DataDir = filepath.Clean(opts.DataDir)
	for _, n := range m.cfg.Nodes {
		if filepath.Clean(n.DataDir) == opts.DataDir {
			return nil, fmt.Errorf("restore: data dir %s is live node %s's", opts.DataDir, n.Name)
		}
	}
	if opts.Port <= 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("restore: port must be 1-65535, got %d", opts.Port)
	}
	if !opts.ListenAddr.IsValid() {
		opts.ListenAddr = netip.MustParseAddr("127.0.0.1")
	}
	if opts.SocketDir == "" {
		opts.SocketDir = opts.DataDir + ".sock"
	}
	if opts.LogFile == "" {
		opts.LogFile = opts.DataDir + ".log"
	}
	if ents, err := os.ReadDir(opts.DataDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("restore: data dir %s is not empty", opts.DataDir)
	}

	l, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	set, err := chooseSet(l, opts.TargetTime)
	if err != nil {
		return nil, err
	}
	if l.LatestRestorable.IsZero() || opts.TargetTime.After(l.LatestRestorable) {
		return nil, fmt.Errorf("restore to %s: %w (%s): wait until the archive has caught up or pick an earlier time",
			opts.TargetTime.UTC().Format(time.RFC3339Nano), ErrAfterLatestRestorable, l.LatestRestorable.Format(time.RFC3339Nano))
	}

	for _, d := range []string{opts.DataDir, opts.SocketDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("restore: create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("restore: chmod %s: %w", d, err)
		}
		if err := m.chown(d); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	start := m.cfg.Clock.Now()
	if _, err := m.pgbackrest(ctx, nil, "--pg1-path="+opts.DataDir, "--set="+set.Label, "--type=time",
		"--target="+pgTime(opts.TargetTime), "--target-action=promote", "--target-timeline=latest", "restore"); err != nil {
		return nil, fmt.Errorf("restore %s to %s: %w", set.Label, pgTime(opts.TargetTime), err)
	}
	if err := writeRestoredOverrides(opts); err != nil {
		return nil, err
	}
	if err := m.chown(filepath.Join(opts.DataDir, "postgresql.auto.conf")); err != nil {
		return nil, err
	}
	s, err := m.startRestored(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.Backup, s.Target = set.Label, opts.TargetTime
	if err := s.waitPromoted(ctx); err != nil {
		_ = s.Stop(context.Background())
		fatal := fatalOrTail(opts.LogFile)
		return nil, fmt.Errorf("recover restored server to %s: %w (log %s: %s)%s", pgTime(opts.TargetTime), err, opts.LogFile, fatal, recoveryHint(fatal))
	}
	m.log.Info("restored to point in time", "target", pgTime(opts.TargetTime), "backup", set.Label, "data_dir", opts.DataDir,
		"addr", netip.AddrPortFrom(opts.ListenAddr, uint16(opts.Port)).String(), "last_replayed", s.LastReplayed, "took", m.cfg.Clock.Now().Sub(start).Round(time.Millisecond).String())
	return s, nil
}

// restoredSettings are forced on a restored server, both in
// postgresql.auto.conf (so a later restart keeps them) and as -c flags.
func restoredSettings(opts RestoreOptions) [][2]string {
	return [][2]string{
		{"listen_addresses", opts.ListenAddr.String()},
		{"port", strconv.Itoa(opts.Port)},
		{"unix_socket_directories", opts.SocketDir},
		{"unix_socket_permissions", "0700"},
		// Never archive into the live cluster's repository.
		{"archive_mode", "off"},
		{"archive_command", ""},
		// A backup carries the primary's setting; it would hang every commit.
		{"synchronous_standby_names", ""},
		// Never stream from the live primary.
		{"primary_conninfo", ""},
		{"logging_collector", "off"},
	}
}

func writeRestoredOverrides(opts RestoreOptions) error {
	if err := os.Remove(filepath.Join(opts.DataDir, "standby.signal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: remove standby.signal: %w", err)
	}
	p := filepath.Join(opts.DataDir, "postgresql.auto.conf")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", p, err)
	}
	var b strings.Builder
	b.WriteString("\n# haven restore: a throwaway server, detached from the live cluster\n")
	for _, kv := range restoredSettings(opts) {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("restore: write %s: %w", p, err)
	}
	return f.Close()
}

func (m *Manager) startRestored(ctx context.Context, opts RestoreOptions) (*RestoredServer, error) {
	logf, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("restore: open log file: %w", err)
	}
	defer logf.Close()
	args := []string{"-D", opts.DataDir}
	for _, kv := range restoredSettings(opts) {
		args = append(args, "-c", kv[0]+"="+kv[1])
	}
	cmd := exec.Command(filepath.Join(m.cfg.PGBinDir, "postgres"), args...)
	cmd.SysProcAttr = m.sysProcAttr()
	cmd.Env = m.env()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("restore: start postgres: %w", err)
	}
	s := &RestoredServer{DataDir: opts.DataDir, SocketDir: opts.SocketDir, ListenAddr: opts.ListenAddr, Port: opts.Port,
		LogFile: opts.LogFile, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(s.done)
	}()
	return s, nil
}

// waitPromoted waits until recovery has ended and the server accepts writes.
func (s *RestoredServer) waitPromoted(ctx context.Context) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.AdminDSN())
		if err == nil {
			var rec bool
			var replayed *time.Time
			err = conn.QueryRow(cctx, "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()").Scan(&rec, &replayed)
			conn.Close(cctx)
			if err == nil && !rec {
				cancel()
				if replayed != nil {
					s.LastReplayed = replayed.UTC()
				}
				return nil
			}
			if err == nil {
				err = errors.New("still in recovery")
			}
		}
		cancel()
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-s.done:
			return errors.New("postmaster exited during recovery")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// recoveryHint says what to do about a recovery that stopped short of its
// target. The latest restorable time stops at the first gap after the
// newest backup, so this is a gap before it (a target served by an older
// backup while archiving was broken), or a segment removed from the
// repository by hand.
func recoveryHint(fatal string) string {
	if !strings.Contains(fatal, "recovery ended before configured recovery target was reached") {
		return ""
	}
	return "; the archive holds no continuous WAL from the backup up to the target (a segment is missing): check `haven db backups` and choose a time the archive covers"
}

// fatalOrTail returns the last FATAL line of a server log, or its tail.
func fatalOrTail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "FATAL:") {
			return strings.TrimSpace(lines[i])
		}
	}
	return tailFile(path, 4)
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
