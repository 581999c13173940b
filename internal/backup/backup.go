// Package backup archives WAL and takes scheduled full and incremental backups of the database tier with pgBackRest, and restores them to a point in time into a new server.
package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/spec"
)

// DefaultBinary is where the Debian pgbackrest package installs the tool.
const DefaultBinary = "/usr/bin/pgbackrest"

// ErrNotInstalled is returned when pgBackRest is missing.
var ErrNotInstalled = errors.New("pgbackrest not found: run `apt-get install -y pgbackrest`")

// Kind is a pgBackRest backup type.
type Kind string

// Backup kinds.
const (
	Full         Kind = "full"
	Incremental  Kind = "incr"
	Differential Kind = "diff"
)

// Schedule says when backups run.
type Schedule struct {
	// Full is when full backups run, in the cron's own time zone (the
	// spec's is UTC). Default "0 3 * * 0" (Sunday 03:00 UTC).
	Full spec.Cron
	// IncrementalEvery is the time between incremental backups (an
	// incremental runs when the newest backup is at least this old).
	// Default 1h; negative disables incrementals.
	IncrementalEvery time.Duration
}

// Config configures a Manager.
type Config struct {
	// Dir holds pgbackrest.conf and pgBackRest's log, lock and spool
	// directories. It lives in the region's state dir, outside both zones,
	// and is created 0700 owned by postgres. Required, absolute.
	Dir string
	// RepoPath is the repository. Default Dir/repo (created 0700, owned by postgres).
	RepoPath string
	// Stanza names the database in the repository, e.g. the region name. Required.
	Stanza string
	// Nodes are the database servers (pg1, pg2, ...). Backups are taken
	// from whichever is the primary. Required: 1 or 2 nodes.
	Nodes []pgha.Node
	// Primary, when set, returns the current primary (pgha's
	// (*Cluster).Primary). Default: the first node that answers and is not
	// in recovery.
	Primary func() pgha.Node
	// RetentionDays is how many days full backups (and the WAL they need)
	// are kept: repo1-retention-full-type=time. Default 7 (RDS allows 1-35).
	RetentionDays int
	// Schedule is when Run takes backups.
	Schedule Schedule
	// CompressType is pgBackRest's compress-type. Default "zst".
	CompressType string
	// ArchiveTimeout is how long archive-push and backups wait for WAL to
	// reach the archive. Default 10s.
	ArchiveTimeout time.Duration
	// SwitchInterval is how often the archive ticker forces a WAL switch on
	// the primary when there were writes. Default 3s; negative disables it.
	SwitchInterval time.Duration
	// RestorableInterval is how often Start's loop lists the repository
	// to refresh Restorable. Default DefaultRestorableInterval (30 s);
	// negative disables the loop (List still refreshes it).
	RestorableInterval time.Duration
	// Binary is the pgbackrest executable. Default DefaultBinary.
	Binary string
	// PGBinDir holds the PostgreSQL 15 binaries. Default pgha.DefaultBinDir.
	PGBinDir string
	// Clock drives the scheduler and the ticker. Default: the wall clock.
	Clock clock.Clock
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// OnEvent, when set, is told of every backup (scheduled or asked for)
	// and expiry. Default: none.
	OnEvent func(Event)
}

func (c *Config) setDefaults() {
	if c.RepoPath == "" {
		c.RepoPath = filepath.Join(c.Dir, "repo")
	}
	if c.RetentionDays == 0 {
		c.RetentionDays = 7
	}
	if c.Schedule.Full.IsZero() {
		c.Schedule.Full = spec.MustCron("0 3 * * 0")
	}
	if c.Schedule.IncrementalEvery == 0 {
		c.Schedule.IncrementalEvery = time.Hour
	}
	if c.CompressType == "" {
		c.CompressType = "zst"
	}
	if c.ArchiveTimeout == 0 {
		c.ArchiveTimeout = 10 * time.Second
	}
	if c.SwitchInterval == 0 {
		c.SwitchInterval = 3 * time.Second
	}
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.PGBinDir == "" {
		c.PGBinDir = pgha.DefaultBinDir
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

var stanzaRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("backup.dir: must be an absolute path, got %q", c.Dir)
	case c.RepoPath != "" && !filepath.IsAbs(c.RepoPath):
		return fmt.Errorf("backup.repo_path: must be an absolute path, got %q", c.RepoPath)
	case !stanzaRE.MatchString(c.Stanza):
		return fmt.Errorf("backup.stanza: must be letters, digits, '.', '_' or '-', got %q", c.Stanza)
	case len(c.Nodes) < 1 || len(c.Nodes) > 2:
		return fmt.Errorf("backup.nodes: must be 1 or 2 nodes, got %d", len(c.Nodes))
	case c.RetentionDays < 0 || c.RetentionDays > 9999999:
		return fmt.Errorf("backup.retention_days: must be 1-9999999, got %d", c.RetentionDays)
	}
	for _, n := range c.Nodes {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("backup.nodes: %w", err)
		}
	}
	switch c.CompressType {
	case "", "zst", "lz4", "gz", "bz2", "none":
	default:
		return fmt.Errorf("backup.compress_type: must be zst, lz4, gz, bz2 or none, got %q", c.CompressType)
	}
	return nil
}

// Manager owns the pgBackRest configuration and repository of one stanza.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	confPath string
	uid, gid int

	mu         sync.Mutex // serialises backups and expiry
	wal        walCache
	ticker     atomic.Pointer[ArchiveStatus] // published by the archive ticker
	restorable atomic.Pointer[Restorable]    // published by List
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	started    bool
}

// New validates cfg, fills in defaults and writes the pgBackRest
// configuration (no secret is in it). It does not touch the database, so it
// can run before the cluster starts: pgha.Config.ArchiveCommand comes from
// (*Manager).ArchiveCommand.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("find %s: %w", cfg.Binary, ErrNotInstalled)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("look up OS user postgres: %w", err)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "backup"), confPath: filepath.Join(cfg.Dir, "pgbackrest.conf")}
	m.uid, _ = strconv.Atoi(u.Uid)
	m.gid, _ = strconv.Atoi(u.Gid)
	if err := m.writeConfig(); err != nil {
		return nil, err
	}
	return m, nil
}

// ConfigPath is the pgbackrest.conf the manager wrote.
func (m *Manager) ConfigPath() string { return m.confPath }

// Stanza is the stanza name.
func (m *Manager) Stanza() string { return m.cfg.Stanza }

// ArchiveCommand is the archive_command for every node (pgha.Config.ArchiveCommand).
// PostgreSQL runs it in the node's data directory, so "$PWD" names that
// node's data directory: each node pushes its own WAL with its own
// pg_control, whichever node is primary. With archive_mode=always the
// standby pushes the segments it received too (so nothing is missing from
// the archive after a failover); pgBackRest accepts a second push of an
// identical segment. When the two copies of a segment differ (exit 45,
// archive-duplicate) the first archived copy stands, on either node: a
// primary that kept failing on it would archive nothing after that segment
// and freeze the restorable window (seen after ~110 failovers in a drill).
// Synchronous replication means both nodes' copies carry every acknowledged
// commit. The event goes to the node's log through stderr.
func (m *Manager) ArchiveCommand() string {
	return fmt.Sprintf(`%s --config=%s --stanza=%s --pg1-path="$PWD" archive-push "$PWD/%%p"; rc=$?; if [ $rc -eq 45 ]; then echo "haven: %%f is already archived with a different checksum (the other node's copy); keeping the archived copy" >&2; rc=0; fi; exit $rc`,
		m.cfg.Binary, shellQuote(m.confPath), m.cfg.Stanza)
}

func shellQuote(s string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_./=:-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// configText renders pgbackrest.conf.
func configText(c Config) string {
	var b strings.Builder
	b.WriteString("# Generated by haven (internal/backup); rewritten at every start. No secrets here.\n[global]\n")
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
	kv("repo1-path", c.RepoPath)
	kv("repo1-retention-full-type", "time")
	kv("repo1-retention-full", strconv.Itoa(c.RetentionDays))
	kv("log-path", filepath.Join(c.Dir, "log"))
	kv("lock-path", filepath.Join(c.Dir, "lock"))
	kv("spool-path", filepath.Join(c.Dir, "spool"))
	kv("log-level-console", "warn")
	kv("log-level-file", "info")
	kv("compress-type", c.CompressType)
	kv("compress-level", "1")
	kv("archive-async", "n")
	kv("archive-timeout", strconv.Itoa(max(1, int(c.ArchiveTimeout/time.Second))))
	kv("process-max", "1")
	kv("start-fast", "y")
	kv("backup-standby", "n")
	// pgha runs archive_mode=always (see ArchiveCommand).
	kv("archive-mode-check", "n")
	fmt.Fprintf(&b, "\n[%s]\n", c.Stanza)
	for i, n := range c.Nodes {
		p := "pg" + strconv.Itoa(i+1) + "-"
		kv(p+"path", n.DataDir)
		kv(p+"port", strconv.Itoa(n.Port))
		kv(p+"socket-path", n.SocketDir)
		kv(p+"user", "postgres")
	}
	return b.String()
}

func (m *Manager) writeConfig() error {
	// The postgres user must be able to traverse to Dir; parents created here are 0711.
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(m.cfg.Dir)), 0o711); err != nil {
		return fmt.Errorf("create parent of %s: %w", m.cfg.Dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(m.cfg.RepoPath)), 0o711); err != nil {
		return fmt.Errorf("create parent of %s: %w", m.cfg.RepoPath, err)
	}
	for _, d := range []string{m.cfg.Dir, m.cfg.RepoPath, filepath.Join(m.cfg.Dir, "log"), filepath.Join(m.cfg.Dir, "lock"), filepath.Join(m.cfg.Dir, "spool"), filepath.Join(m.cfg.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("chmod %s: %w", d, err)
		}
		if err := m.chown(d); err != nil {
			return err
		}
	}
	// pgBackRest runs as postgres: the config is handed over before it is in place.
	return atomicfile.WriteFile(m.confPath, []byte(configText(m.cfg)), 0o600, atomicfile.Options{Prepare: m.chown})
}

func (m *Manager) chown(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.Chown(path, m.uid, m.gid); err != nil {
		return fmt.Errorf("chown %s to postgres: %w", path, err)
	}
	return nil
}

func (m *Manager) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		a.Credential = &syscall.Credential{Uid: uint32(m.uid), Gid: uint32(m.gid)}
	}
	return a
}

func (m *Manager) env() []string {
	return []string{"PATH=" + m.cfg.PGBinDir + ":/usr/bin:/bin", "LC_ALL=C.UTF-8", "TZ=UTC", "HOME=" + m.cfg.Dir}
}

// command builds a process running as postgres in its own process group,
// killed with its group when ctx ends.
func (m *Manager) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = m.sysProcAttr()
	cmd.Env = m.env()
	cmd.Dir = "/"
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// pgbackrest runs one pgBackRest command and returns its stdout. Every line
// of output is passed to onLine when it is set.
func (m *Manager) pgbackrest(ctx context.Context, onLine func(string), args ...string) ([]byte, error) {
	full := append([]string{"--config=" + m.confPath, "--stanza=" + m.cfg.Stanza}, args...)
	cmd := m.command(ctx, m.cfg.Binary, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &stderr
	if onLine == nil {
		cmd.Stdout = &stdout
		err := cmd.Run()
		if err != nil {
			return stdout.Bytes(), fmt.Errorf("pgbackrest %s: %w: %s", args[len(args)-1], err, lastLines(stderr.String()+stdout.String(), 4))
		}
		return stdout.Bytes(), nil
	}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(&stdout, pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			onLine(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("pgbackrest %s: %w: %s", args[len(args)-1], err, lastLines(stderr.String()+stdout.String(), 4))
	}
	return stdout.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}

// StanzaCreate creates the stanza in the repository (idempotent: an existing
// stanza for the same database is fine) and checks that WAL archiving works.
// The database must be running with ArchiveCommand.
func (m *Manager) StanzaCreate(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.pgbackrest(ctx, nil, "stanza-create"); err != nil {
		return fmt.Errorf("create stanza %s: %w", m.cfg.Stanza, err)
	}
	if _, err := m.pgbackrest(ctx, nil, "check"); err != nil {
		return fmt.Errorf("check stanza %s: %w", m.cfg.Stanza, err)
	}
	m.log.Info("stanza ready", "stanza", m.cfg.Stanza, "repo", m.cfg.RepoPath)
	return nil
}

// Progress is a backup's progress, reported per copied file.
type Progress struct {
	// Percent of the backup's bytes done, 0-100.
	Percent float64
	// File is the file just copied.
	File string
}

// progressRE matches pgBackRest's detail line for a copied file, e.g.
// "P00 DETAIL: backup file /data/base/1/1259 (104KB, 12.34%) checksum ...".
var progressRE = regexp.MustCompile(`(?:backup|match) file (\S+) .*?\(([^,]+), ([0-9.]+)%\)`)

// Backup takes a backup of kind (Full, Incremental or Differential) from the
// current primary. onProgress, when set, is called as files are copied.
// An incremental or differential backup with no full backup before it is
// taken as a full backup by pgBackRest.
func (m *Manager) Backup(ctx context.Context, kind Kind, onProgress func(Progress)) (BackupInfo, error) {
	switch kind {
	case Full, Incremental, Differential:
	default:
		return BackupInfo{}, fmt.Errorf("backup: kind must be full, incr or diff, got %q", kind)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var onLine func(string)
	if onProgress != nil {
		onLine = func(l string) {
			if sm := progressRE.FindStringSubmatch(l); sm != nil {
				pct, _ := strconv.ParseFloat(sm[3], 64)
				onProgress(Progress{Percent: pct, File: sm[1]})
			}
		}
	}
	start := m.cfg.Clock.Now()
	args := []string{"--type=" + string(kind)}
	if onLine != nil {
		args = append(args, "--log-level-console=detail")
	}
	m.emit(Event{Kind: "backup-started", Message: string(kind) + " backup of " + m.cfg.Stanza + " started", Attrs: map[string]any{"type": string(kind)}})
	if _, err := m.pgbackrest(ctx, onLine, append(args, "backup")...); err != nil {
		err = fmt.Errorf("%s backup of %s: %w", kind, m.cfg.Stanza, err)
		m.emit(Event{Kind: "backup-failed", Message: err.Error(), Attrs: map[string]any{"type": string(kind)}})
		return BackupInfo{}, err
	}
	backups, err := m.backups(ctx)
	if err != nil {
		return BackupInfo{}, err
	}
	if len(backups) == 0 {
		return BackupInfo{}, errors.New("backup: pgbackrest reported success but the repository lists no backup")
	}
	b := backups[len(backups)-1]
	took := m.cfg.Clock.Now().Sub(start)
	m.emit(Event{Kind: "backup-done", Label: b.Label, Message: fmt.Sprintf("%s backup %s done in %s", b.Type, b.Label, took.Round(time.Millisecond)),
		Attrs: map[string]any{"type": string(b.Type), "size_bytes": b.Size, "repo_bytes": b.RepoSize, "took_ms": took.Milliseconds()}})
	m.log.Info("backup done", "label", b.Label, "type", b.Type, "size", b.Size, "repo_size", b.RepoSize, "took", m.cfg.Clock.Now().Sub(start).Round(time.Millisecond).String())
	return b, nil
}

// Expire removes backups (and the WAL only they need) older than the retention.
func (m *Manager) Expire(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.pgbackrest(ctx, nil, "expire"); err != nil {
		return fmt.Errorf("expire backups of %s: %w", m.cfg.Stanza, err)
	}
	m.emit(Event{Kind: "expired", Message: fmt.Sprintf("backups older than %d days expired", m.cfg.RetentionDays)})
	return nil
}

// Start creates the stanza (the database must be running with
// ArchiveCommand) and starts the archive ticker and the backup scheduler.
// With the schedule's defaults the first full backup runs at once.
func (m *Manager) Start(ctx context.Context) error {
	if m.started {
		return errors.New("start backups: already started")
	}
	if err := m.StanzaCreate(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel, m.started = cancel, true
	m.wg.Add(3)
	go func() { defer m.wg.Done(); m.ArchiveTicker(runCtx) }()
	go func() { defer m.wg.Done(); m.Run(runCtx) }()
	go func() { defer m.wg.Done(); m.refreshRestorable(runCtx) }()
	return nil
}

// Stop stops the ticker and the scheduler; a running backup is killed.
func (m *Manager) Stop(ctx context.Context) error {
	if m.cancel != nil {
		m.cancel()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop backups: %w", ctx.Err())
	}
}

// Event is something the backup tier did (Config.OnEvent).
type Event struct {
	// Kind is backup-started, backup-done, backup-failed or expired.
	Kind string
	// Label is the backup's label (when known).
	Label string
	// Message says it in a sentence.
	Message string
	// Attrs are the facts: type, size_bytes, took_ms.
	Attrs map[string]any
}

func (m *Manager) emit(e Event) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}
