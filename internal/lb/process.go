package lb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/unixsock"
)

// Defaults of ProcessConfig.
const (
	DefaultProcessStartTimeout = 20 * time.Second
	DefaultProcessStopTimeout  = 15 * time.Second
	// ProcessLogFile is the processes' stdout and stderr, in Dir.
	ProcessLogFile = "lb.log"
)

// ProcessConfig configures Process.
type ProcessConfig struct {
	// Dir holds the processes' control sockets, records and log (the
	// region's <state>/lb). Created 0700. Required.
	Dir string
	// Config is the load balancer: its settings, and TLS with one
	// certificate (Certificates[0]), which the process gets over a pipe.
	// AccessLog, Dial, Logger and Clock are not used: the process opens
	// AccessLogPath itself and dials from where it runs.
	Config Config
	// AccessLogPath is the access log file. Default "": none.
	AccessLogPath string
	// Command is the argv of a load balancer process, to which Serve's
	// flags are appended. Default: this executable with "lb serve" (the
	// CLI's hidden command).
	Command []string
	// Start starts a process where the load balancer lives: inside its
	// node's namespace in a region's VPC (vpc.Namespace.Start), keeping
	// cmd's SysProcAttr and ExtraFiles. Default: cmd.Start.
	Start func(*exec.Cmd) error
	// Env holds extra environment variables for the processes. Default none.
	Env []string
	// Version is this build's version: a process of another version (or
	// other settings) found at Start is replaced by a hot restart. Default "".
	Version string
	// StartTimeout bounds the wait for a new process to serve. Default 20s.
	StartTimeout time.Duration
	// StopTimeout bounds Stop's wait after SIGTERM, before SIGKILL. Default 15s.
	StopTimeout time.Duration
	// OnEvent receives lifecycle events (started, adopted, exited,
	// restarted, left-alone). It must return quickly. Default none.
	OnEvent func(ProcessEvent)
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Kinds of ProcessEvent.
const (
	ProcessStarted   = "process-started"    // a new process serves (first start, or after one died)
	ProcessAdopted   = "process-adopted"    // a running process of an earlier daemon was adopted
	ProcessExited    = "process-exited"     // the serving process died; a new one is started
	ProcessReplaced  = "process-replaced"   // hot restart: a new process took the sockets, the old one drains
	ProcessLeftAlone = "process-left-alone" // a record named a pid that is now another program
)

// ProcessEvent is one lifecycle event of the load balancer's processes.
type ProcessEvent struct {
	Kind    string
	PID     int
	Message string
}

// Process runs the load balancer as its own process (`haven lb serve`),
// so the site keeps serving while the daemon that started it crashes,
// restarts or is upgraded. The daemon side holds:
//
//   - the listening sockets: it binds them once and keeps a descriptor of
//     each, so a process that dies leaves its pending connections queued
//     in the kernel (not refused) until the next process, started with the
//     same sockets, accepts them; a daemon that adopts a running process
//     takes the descriptors from it (SCM_RIGHTS on its .fds socket);
//   - a mirror of the targets and their health, from the process's watch
//     stream, for the fleet (TargetHealth) and the region's status;
//   - a supervisor that starts a new process, with the mirror's targets in
//     their states, as soon as the serving one exits.
//
// Restart is a hot restart, as HAProxy's seamless reload: a new process
// (of this daemon's binary and settings) inherits the sockets and the
// targets' states, and once it serves, the old one stops accepting and
// drains (Drain). Every process is recorded in Dir/lb-<pid>.json with its
// identity (pid, start time, cgroup, network namespace); a later daemon
// adopts only a process that still matches its record.
type Process struct {
	cfg      ProcessConfig
	log      *slog.Logger
	settings Settings
	certPEM  []byte
	keyPEM   []byte

	// mu serialises the lifecycle (start, restart, relaunch, stop) and
	// guards cur, files and the fields below.
	mu       sync.Mutex
	cur      *child
	files    map[string]*os.File // the daemon's descriptors of the listening sockets
	stopping bool
	started  bool
	superv   context.CancelFunc
	supDone  chan struct{}
	adoption Adoption

	// The mirror of the targets, published for readers.
	mirrorMu sync.Mutex
	mirror   map[string]TargetStatus
	snap     atomic.Pointer[[]TargetStatus]
	hooks    []func(TargetStatus)

	stateMu   sync.Mutex
	lastState ProcessState
	lastAt    time.Time

	metricsMu   sync.Mutex
	lastMetrics Metrics
}

// Adoption is what Start found of earlier processes.
type Adoption struct {
	// Adopted is the pid of the running process Start adopted (0: none).
	Adopted int `json:"adopted,omitempty"`
	// Replaced is the pid a hot restart replaced right after adoption,
	// with why (another version or other settings).
	Replaced       int    `json:"replaced,omitempty"`
	ReplacedReason string `json:"replaced_reason,omitempty"`
	// LeftAlone lists records whose pid now runs another program, with
	// why; those processes were not touched.
	LeftAlone []string `json:"left_alone,omitempty"`
	// Gone lists recorded processes that had exited.
	Gone []int `json:"gone,omitempty"`
}

// child is one load balancer process.
type child struct {
	id      proc.Identity
	ctl     *http.Client
	gone    <-chan struct{} // closed when the process has exited
	cancel  context.CancelFunc
	retired atomic.Bool // replaced or stopped on purpose: its exit is expected
	version string
	digest  string
}

// record is what Dir/lb-<pid>.json holds.
type record struct {
	Identity  proc.Identity `json:"identity"`
	Version   string        `json:"version"`
	Digest    string        `json:"digest"`
	StartedAt time.Time     `json:"started_at"`
}

// NewProcess checks cfg; it starts nothing.
func NewProcess(cfg ProcessConfig) (*Process, error) {
	if cfg.Dir == "" {
		return nil, errors.New("load balancer process: Dir is required")
	}
	if err := cfg.Config.Validate(); err != nil {
		return nil, fmt.Errorf("load balancer process: %w", err)
	}
	if len(cfg.Config.TLS.Certificates) == 0 {
		return nil, errors.New("load balancer process: TLS needs Certificates[0] (a process cannot take GetCertificate)")
	}
	certPEM, keyPEM, err := encodeCertificate(cfg.Config.TLS.Certificates[0])
	if err != nil {
		return nil, fmt.Errorf("load balancer process: %w", err)
	}
	if cfg.Start == nil {
		cfg.Start = (*exec.Cmd).Start
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultProcessStartTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultProcessStopTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Process{
		cfg: cfg, log: cfg.Logger.With("component", "lb-process"), settings: SettingsOf(cfg.Config),
		certPEM: certPEM, keyPEM: keyPEM, mirror: map[string]TargetStatus{},
	}
	empty := []TargetStatus{}
	p.snap.Store(&empty)
	return p, nil
}

// encodeCertificate returns the PEM of a certificate chain and its key.
func encodeCertificate(c tls.Certificate) ([]byte, []byte, error) {
	var chain bytes.Buffer
	for _, der := range c.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode TLS key: %w", err)
	}
	return chain.Bytes(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func (p *Process) emit(kind string, pid int, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	p.log.Info(msg, "event", kind, "pid", pid)
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(ProcessEvent{Kind: kind, PID: pid, Message: msg})
	}
}

// Start adopts the load balancer process an earlier daemon left serving
// (the newest whose record still matches it; older ones are asked to
// drain), replacing it at once by a hot restart when it runs another
// version or other settings; without one, it binds the listeners and
// starts a process. Then it supervises: a process that exits is replaced
// at once, with the same sockets and the targets' last states.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("start load balancer process: already started")
	}
	if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("start load balancer process: %w", err)
	}
	if err := p.adoptLocked(ctx); err != nil {
		return err
	}
	if p.cur == nil {
		if err := p.bindLocked(ctx); err != nil {
			return err
		}
		c, err := p.launchLocked(ctx, nil)
		if err != nil {
			p.closeFilesLocked()
			return err
		}
		p.cur = c
		p.emit(ProcessStarted, c.id.PID, "load balancer process %d serves %s", c.id.PID, p.settings.HTTPSAddr)
	} else if why := p.staleReason(p.cur); why != "" {
		old := p.cur.id.PID
		if err := p.restartLocked(ctx); err != nil {
			return fmt.Errorf("replace load balancer process %d (%s): %w", old, why, err)
		}
		p.adoption.Replaced, p.adoption.ReplacedReason = old, why
	}
	p.started = true
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.superv, p.supDone = cancel, make(chan struct{})
	go p.supervise(sctx)
	return nil
}

// staleReason says why a running process must be replaced: another
// version, or other settings; "" when it fits.
func (p *Process) staleReason(c *child) string {
	switch {
	case c.version != p.cfg.Version:
		return fmt.Sprintf("it runs version %s, this daemon is %s", c.version, p.cfg.Version)
	case c.digest != p.settings.Digest():
		return "the load balancer's settings changed"
	}
	return ""
}

// Adoption reports what Start found of earlier processes.
func (p *Process) Adoption() Adoption {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.adoption
	a.LeftAlone = slices.Clone(a.LeftAlone)
	a.Gone = slices.Clone(a.Gone)
	return a
}

// PID is the serving process's pid (0 when none).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.id.PID
}

// adoptLocked looks for running processes of an earlier daemon and adopts
// the newest that still matches its record.
func (p *Process) adoptLocked(ctx context.Context) error {
	recs, _ := filepath.Glob(filepath.Join(p.cfg.Dir, "lb-*.json"))
	type cand struct {
		rec record
		st  ProcessState
		ctl *http.Client
	}
	var cands []cand
	for _, path := range recs {
		var rec record
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil {
			p.log.Warn("unreadable load balancer record; removing it", "record", path, "err", err)
			_ = os.Remove(path)
			continue
		}
		pid := rec.Identity.PID
		if err := rec.Identity.Check(); err != nil {
			if errors.Is(err, proc.ErrNotSame) {
				msg := fmt.Sprintf("pid %d: %v", pid, err)
				p.adoption.LeftAlone = append(p.adoption.LeftAlone, msg)
				p.emit(ProcessLeftAlone, pid, "load balancer record %s names a process that is not ours any more (%v): left alone", filepath.Base(path), err)
			} else {
				p.adoption.Gone = append(p.adoption.Gone, pid)
			}
			p.removeRecord(pid)
			continue
		}
		ctl := unixsock.HTTPClient(p.ctlPath(pid), 5*time.Second)
		st, err := getState(ctx, ctl)
		if err != nil || st.PID != pid {
			// Ours by its identity, but it does not answer as a load
			// balancer: leave it (it is not serving the sockets we need).
			p.adoption.LeftAlone = append(p.adoption.LeftAlone, fmt.Sprintf("pid %d: its control socket does not answer (%v)", pid, err))
			p.emit(ProcessLeftAlone, pid, "load balancer process %d does not answer on its control socket (%v): left alone", pid, err)
			continue
		}
		cands = append(cands, cand{rec: rec, st: st, ctl: ctl})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].st.StartedAt.After(cands[j].st.StartedAt) })
	var chosen *cand
	for i := range cands {
		c := &cands[i]
		if chosen == nil && c.st.Ready && !c.st.Draining {
			chosen = c
			continue
		}
		if !c.st.Draining {
			// A second serving process (a daemon died in a hot restart):
			// the newest keeps serving, this one hands over.
			_ = postDrain(ctx, c.ctl)
		}
	}
	if chosen == nil {
		return nil
	}
	pid := chosen.rec.Identity.PID
	files, err := p.fetchFiles(pid)
	if err != nil {
		return fmt.Errorf("adopt load balancer process %d: take its listening sockets: %w", pid, err)
	}
	gone, err := chosen.rec.Identity.Gone(context.Background())
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("adopt load balancer process %d: %w", pid, err)
	}
	p.files = files
	c := &child{id: chosen.rec.Identity, ctl: chosen.ctl, gone: gone, version: chosen.st.Version, digest: chosen.st.Digest}
	p.setMirror(chosen.st.Targets)
	p.watch(c)
	p.cur = c
	p.adoption.Adopted = pid
	p.emit(ProcessAdopted, pid, "adopted load balancer process %d (version %s, serving since %s, %d targets)", pid, c.version, chosen.st.StartedAt.Format(time.RFC3339), len(chosen.st.Targets))
	return nil
}

// fetchFiles takes the listening sockets from process pid.
func (p *Process) fetchFiles(pid int) (map[string]*os.File, error) {
	c, err := net.DialTimeout("unix", p.fdsPath(pid), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	files, err := unixsock.RecvFiles(c.(*net.UnixConn))
	if err != nil {
		return nil, err
	}
	if files["https"] == nil {
		for _, f := range files {
			f.Close()
		}
		return nil, errors.New("no https listener among the sockets it handed over")
	}
	return files, nil
}

// bindLocked binds the listeners and keeps their descriptors.
func (p *Process) bindLocked(ctx context.Context) error {
	var lc net.ListenConfig
	files := map[string]*os.File{}
	for _, l := range []struct{ name, addr string }{{"https", p.settings.HTTPSAddr}, {"http", p.settings.HTTPAddr}} {
		if l.addr == "" {
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", l.addr)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return fmt.Errorf("start load balancer: listen %s %s: %w (is another region or program using this port? set load_balancer.%s)", l.name, l.addr, err, l.name)
		}
		f, err := unixsock.ListenerFile(ln)
		ln.Close()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return fmt.Errorf("start load balancer: %w", err)
		}
		files[l.name] = f
	}
	p.files = files
	return nil
}

func (p *Process) closeFilesLocked() {
	for _, f := range p.files {
		f.Close()
	}
	p.files = nil
}

func (p *Process) ctlPath(pid int) string {
	return filepath.Join(p.cfg.Dir, "lb-"+strconv.Itoa(pid)+".sock")
}
func (p *Process) fdsPath(pid int) string {
	return filepath.Join(p.cfg.Dir, "lb-"+strconv.Itoa(pid)+".fds")
}
func (p *Process) recPath(pid int) string {
	return filepath.Join(p.cfg.Dir, "lb-"+strconv.Itoa(pid)+".json")
}

func (p *Process) removeRecord(pid int) {
	_ = os.Remove(p.recPath(pid))
	_ = os.Remove(p.ctlPath(pid))
	_ = os.Remove(p.fdsPath(pid))
}

// launchLocked starts a process with the daemon's sockets and targets,
// waits until it serves, and records it.
func (p *Process) launchLocked(ctx context.Context, targets []TargetStatus) (*child, error) {
	argv := p.cfg.Command
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("start load balancer process: %w", err)
		}
		argv = []string{exe, "lb", "serve"}
	}
	argv = append(slices.Clone(argv), "--dir", p.cfg.Dir, "--spec-fd", "3")
	spec := ProcessSpec{Settings: p.settings, CertPEM: p.certPEM, KeyPEM: p.keyPEM, AccessLog: p.cfg.AccessLogPath, Targets: targets}
	var extra []*os.File
	for _, name := range []string{"https", "http"} {
		if f := p.files[name]; f != nil {
			spec.Listeners = append(spec.Listeners, name)
			extra = append(extra, f)
		}
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("start load balancer process: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start load balancer process: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(p.cfg.Dir, ProcessLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start load balancer process: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = append([]*os.File{pr}, extra...)
	cmd.Env = append(processEnv(), p.cfg.Env...)
	// Its own session and no parent-death signal: it outlives the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = p.cfg.Start(cmd)
	pr.Close()
	logf.Close()
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start load balancer process %s: %w", argv[0], err)
	}
	go func() {
		_, _ = pw.Write(specJSON)
		pw.Close()
	}()
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	ctl := unixsock.HTTPClient(p.ctlPath(pid), 5*time.Second)
	wctx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	st, err := waitReady(wctx, ctl, pid, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		p.removeRecord(pid)
		return nil, fmt.Errorf("start load balancer process: %w%s", err, logTail(filepath.Join(p.cfg.Dir, ProcessLogFile)))
	}
	id, err := proc.IdentityOf(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("start load balancer process: %w", err)
	}
	rec := record{Identity: id, Version: st.Version, Digest: st.Digest, StartedAt: st.StartedAt}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := atomicfile.WriteFile(p.recPath(pid), append(b, '\n'), 0o600); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("start load balancer process: record it: %w", err)
	}
	c := &child{id: id, ctl: ctl, gone: exited, version: st.Version, digest: st.Digest}
	p.setMirror(st.Targets)
	p.watch(c)
	return c, nil
}

// processEnv is a load balancer process's environment: the daemon's,
// without AWS_* variables (it needs none) and with a GOGC that trades a
// little memory for less collector work per request.
func processEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	return append(env, "GOGC=400")
}

func waitReady(ctx context.Context, ctl *http.Client, pid int, exited <-chan struct{}) (ProcessState, error) {
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		st, err := getState(ctx, ctl)
		if err == nil && st.PID == pid && st.Ready {
			return st, nil
		}
		select {
		case <-exited:
			return ProcessState{}, errors.New("the process exited before it served")
		case <-ctx.Done():
			return ProcessState{}, fmt.Errorf("the process did not serve in time (last: %v): %w", err, ctx.Err())
		case <-time.After(delay):
		}
	}
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return "\nload balancer log (" + path + "):\n" + strings.TrimSpace(string(b))
}

func getState(ctx context.Context, ctl *http.Client) (ProcessState, error) {
	var st ProcessState
	err := ctlDo(ctx, ctl, http.MethodGet, "/v1/state", nil, &st)
	return st, err
}

func postDrain(ctx context.Context, ctl *http.Client) error {
	return ctlDo(ctx, ctl, http.MethodPost, "/v1/drain", nil, nil)
}

// ctlDo makes one request on a process's control socket.
func ctlDo(ctx context.Context, ctl *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://lb"+path, body)
	if err != nil {
		return err
	}
	resp, err := ctl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e ctlError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return &ctlStatusError{code: resp.StatusCode, msg: e.Error}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

type ctlStatusError struct {
	code int
	msg  string
}

func (e *ctlStatusError) Error() string {
	return fmt.Sprintf("load balancer process: %d %s", e.code, e.msg)
}

// watch follows the child's target changes into the mirror until the
// child is gone.
func (p *Process) watch(c *child) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		for {
			err := p.watchOnce(ctx, c)
			select {
			case <-ctx.Done():
				return
			case <-c.gone:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err != nil {
				p.log.Debug("watch load balancer process again", "pid", c.id.PID, "err", err)
			}
		}
	}()
}

func (p *Process) watchOnce(ctx context.Context, c *child) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://lb/v1/watch", nil)
	if err != nil {
		return err
	}
	// The stream has no end: no client timeout.
	cl := &http.Client{Transport: c.ctl.Transport}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("watch: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev watchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		if c.retired.Load() {
			return nil
		}
		switch ev.Kind {
		case "snapshot":
			p.setMirror(ev.Snapshot)
		case "target":
			if ev.Target != nil {
				p.applyMirror(*ev.Target)
			}
		}
	}
	return sc.Err()
}

// setMirror replaces the mirror with a snapshot, telling the hooks of
// every target whose state changed (or that went away).
func (p *Process) setMirror(ts []TargetStatus) {
	p.mirrorMu.Lock()
	var changed []TargetStatus
	next := make(map[string]TargetStatus, len(ts))
	for _, t := range ts {
		next[t.ID] = t
		if old, ok := p.mirror[t.ID]; !ok || old.State != t.State {
			changed = append(changed, t)
		}
	}
	for id, old := range p.mirror {
		if _, ok := next[id]; !ok {
			old.State, old.Reason, old.Since = StateUnused, "", time.Now()
			changed = append(changed, old)
		}
	}
	p.mirror = next
	p.publishMirrorLocked()
	hooks := slices.Clone(p.hooks)
	p.mirrorMu.Unlock()
	for _, t := range changed {
		notify(hooks, t)
	}
}

// applyMirror applies one target change.
func (p *Process) applyMirror(t TargetStatus) {
	p.mirrorMu.Lock()
	old, had := p.mirror[t.ID]
	if t.State == StateUnused {
		if !had {
			p.mirrorMu.Unlock()
			return
		}
		delete(p.mirror, t.ID)
	} else {
		p.mirror[t.ID] = t
	}
	p.publishMirrorLocked()
	hooks := slices.Clone(p.hooks)
	p.mirrorMu.Unlock()
	if !had || old.State != t.State {
		notify(hooks, t)
	}
}

func (p *Process) publishMirrorLocked() {
	out := make([]TargetStatus, 0, len(p.mirror))
	for _, t := range p.mirror {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	p.snap.Store(&out)
}

// supervise replaces the serving process as soon as it exits, unless it
// was retired on purpose.
func (p *Process) supervise(ctx context.Context) {
	defer close(p.supDone)
	failures := 0
	for {
		p.mu.Lock()
		c := p.cur
		p.mu.Unlock()
		var gone <-chan struct{}
		if c != nil {
			gone = c.gone
		}
		select {
		case <-ctx.Done():
			return
		case <-gone:
		case <-time.After(time.Second):
			if c == nil {
				break // nothing serves: try again below
			}
			failures = 0
			continue
		}
		p.mu.Lock()
		if p.stopping || ctx.Err() != nil {
			p.mu.Unlock()
			return
		}
		if p.cur != c || (c != nil && c.retired.Load()) {
			p.mu.Unlock()
			continue // replaced meanwhile
		}
		if c != nil {
			c.retired.Store(true)
			c.cancel()
			p.removeRecord(c.id.PID)
			p.emit(ProcessExited, c.id.PID, "load balancer process %d exited; starting another with the same sockets", c.id.PID)
		}
		targets := p.mirrorTargets()
		nc, err := p.launchLocked(ctx, targets)
		if err != nil {
			p.cur = nil
			p.mu.Unlock()
			failures++
			d := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			p.log.Error("restart load balancer process", "err", err, "retry_in", d)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		p.cur = nc
		p.mu.Unlock()
		p.emit(ProcessStarted, nc.id.PID, "load balancer process %d serves again (%d targets restored)", nc.id.PID, len(targets))
	}
}

// Restart is a hot restart: a new process of this binary and settings
// takes the listening sockets and the targets' current states, and once
// it serves, the old process stops accepting and drains.
func (p *Process) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started || p.stopping {
		return errors.New("restart load balancer process: not running")
	}
	return p.restartLocked(ctx)
}

func (p *Process) restartLocked(ctx context.Context) error {
	old := p.cur
	targets := p.mirrorTargets()
	if old != nil {
		if st, err := getState(ctx, old.ctl); err == nil {
			targets = st.Targets
		}
	}
	var keep []TargetStatus
	for _, t := range targets {
		if t.State != StateDraining {
			keep = append(keep, t)
		}
	}
	nc, err := p.launchLocked(ctx, keep)
	if err != nil {
		return err
	}
	p.cur = nc
	if old != nil {
		old.retired.Store(true)
		old.cancel()
		if err := postDrain(ctx, old.ctl); err != nil {
			p.log.Warn("ask the old load balancer process to drain", "pid", old.id.PID, "err", err)
		}
		// Its record goes once it has drained and exited.
		go func(c *child) {
			<-c.gone
			p.removeRecord(c.id.PID)
		}(old)
		p.emit(ProcessReplaced, nc.id.PID, "load balancer process %d took over the sockets from %d (version %s), which drains", nc.id.PID, old.id.PID, nc.version)
	}
	return nil
}

// Stop stops the serving process (SIGTERM: it stops accepting and lets
// in-flight requests finish; SIGKILL after StopTimeout) and any still
// draining, closes the daemon's listening sockets and removes the records.
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	cancel, done := p.superv, p.supDone
	p.mu.Unlock()
	cancel()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	recs, _ := filepath.Glob(filepath.Join(p.cfg.Dir, "lb-*.json"))
	for _, path := range recs {
		var rec record
		b, err := os.ReadFile(path)
		if err != nil || json.Unmarshal(b, &rec) != nil {
			_ = os.Remove(path)
			continue
		}
		if err := p.stopOne(ctx, rec.Identity); err != nil {
			errs = append(errs, err)
		}
		p.removeRecord(rec.Identity.PID)
	}
	if p.cur != nil {
		p.cur.retired.Store(true)
		p.cur.cancel()
		p.cur = nil
	}
	p.closeFilesLocked()
	p.started = false
	return errors.Join(errs...)
}

// stopOne ends one recorded process, if it is still the one recorded.
func (p *Process) stopOne(ctx context.Context, id proc.Identity) error {
	gone, err := id.Gone(context.Background())
	if err != nil {
		return err
	}
	select {
	case <-gone:
		return nil
	default:
	}
	_ = syscall.Kill(id.PID, syscall.SIGTERM)
	select {
	case <-gone:
		p.log.Info("load balancer process stopped", "pid", id.PID)
		return nil
	case <-ctx.Done():
	case <-time.After(p.cfg.StopTimeout):
	}
	if id.Check() == nil {
		_ = syscall.Kill(id.PID, syscall.SIGKILL)
	}
	select {
	case <-gone:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop load balancer process %d: it survived SIGKILL", id.PID)
	}
}

// Detach lets go of the processes without stopping them: for a daemon that
// hands over to another (an upgrade), which adopts them.
func (p *Process) Detach() {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	cancel, done := p.superv, p.supDone
	p.mu.Unlock()
	cancel()
	<-done
	p.mu.Lock()
	if p.cur != nil {
		p.cur.cancel()
	}
	p.closeFilesLocked()
	p.started = false
	p.mu.Unlock()
}

// OnChange adds a hook called with a target's status whenever its state
// changes in the serving process (StateUnused once it is removed).
func (p *Process) OnChange(fn func(TargetStatus)) {
	p.mirrorMu.Lock()
	defer p.mirrorMu.Unlock()
	p.hooks = append(p.hooks, fn)
}

// Register adds a target to the serving process. Registering a target the
// process has already, unchanged, succeeds (an adopted instance).
func (p *Process) Register(t Target) error {
	c := p.current()
	if c == nil {
		return errors.New("register target: no load balancer process serves")
	}
	var st TargetStatus
	if err := ctlDo(context.Background(), c.ctl, http.MethodPost, "/v1/targets", t, &st); err != nil {
		var se *ctlStatusError
		if errors.As(err, &se) && se.code == http.StatusConflict {
			return fmt.Errorf("register target %s: %w", t.ID, ErrDuplicateTarget)
		}
		return fmt.Errorf("register target %s: %w", t.ID, err)
	}
	p.applyMirror(st)
	return nil
}

// Deregister drains target id in the serving process and returns once it
// is removed (see LB.Deregister).
func (p *Process) Deregister(ctx context.Context, id string) error {
	c := p.current()
	if c == nil {
		return errors.New("deregister target: no load balancer process serves")
	}
	err := ctlDo(ctx, &http.Client{Transport: c.ctl.Transport}, http.MethodPost, "/v1/targets/"+url.PathEscape(id)+"/deregister", nil, nil)
	var se *ctlStatusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return fmt.Errorf("deregister %s: %w", id, ErrUnknownTarget)
	}
	if err != nil {
		return fmt.Errorf("deregister %s: %w", id, err)
	}
	return nil
}

func (p *Process) current() *child {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// Targets returns the targets as the serving process last reported them,
// sorted by ID: their states as its watch stream tells them, their
// request counts as of its last state report (at most 100 ms old). The
// counts go on across a restart of the process: the next one starts from
// the last counts known.
func (p *Process) Targets() []TargetStatus {
	p.State() // refreshes the counts
	return p.mirrorTargets()
}

// mirrorTargets is the mirror, without asking the process.
func (p *Process) mirrorTargets() []TargetStatus {
	return slices.Clone(*p.snap.Load())
}

// noteCounts copies the request counts of a state report into the mirror.
func (p *Process) noteCounts(ts []TargetStatus) {
	p.mirrorMu.Lock()
	defer p.mirrorMu.Unlock()
	for _, t := range ts {
		if m, ok := p.mirror[t.ID]; ok {
			m.Requests, m.Responses5xx, m.Latency = t.Requests, t.Responses5xx, t.Latency
			m.InFlight = t.InFlight
			p.mirror[t.ID] = m
		}
	}
	p.publishMirrorLocked()
}

// Metrics returns the serving process's counters for the metrics endpoint
// (LB.Metrics): the last snapshot it gave when it does not answer within
// 300 ms. A new process (one that died, or a hot restart) counts from
// zero, except the per-target counts Targets reports: the metrics treat a
// counter that went down as reset.
func (p *Process) Metrics() Metrics {
	p.metricsMu.Lock()
	defer p.metricsMu.Unlock()
	if c := p.current(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		var m Metrics
		err := ctlDo(ctx, c.ctl, http.MethodGet, "/v1/metrics", nil, &m)
		cancel()
		if err == nil {
			p.lastMetrics = m
		} else {
			p.log.Debug("read the load balancer process's metrics", "pid", c.id.PID, "err", err)
		}
	}
	return p.lastMetrics
}

// SetTargetGroup changes the target group's settings in the serving
// process in place (LB.SetTargetGroup: health check, algorithm,
// deregistration delay, slow start, idle timeout; no target re-registered,
// no connection closed), and keeps them for every process started later:
// after one dies, in a hot restart, and a later daemon with the same
// settings adopts the process instead of replacing it.
func (p *Process) SetTargetGroup(c Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := p.settings.withTargetGroup(SettingsOf(c))
	check := next.Config()
	check.TLS = p.cfg.Config.TLS
	if err := check.Validate(); err != nil {
		return fmt.Errorf("modify target group %s: %w", next.Name, err)
	}
	if p.cur == nil {
		return fmt.Errorf("modify target group %s: no load balancer process serves", next.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got Settings
	if err := ctlDo(ctx, p.cur.ctl, http.MethodPost, "/v1/target-group", next, &got); err != nil {
		return fmt.Errorf("modify target group %s: %w", next.Name, err)
	}
	p.settings = next
	p.cur.digest = got.Digest()
	p.log.Info("target group modified", "pid", p.cur.id.PID, "interval", next.HealthCheck.Interval, "deregistration_delay", next.DeregistrationDelay, "algorithm", next.Algorithm)
	return nil
}

// TargetHealth returns the state of target id, and false if it is not registered.
func (p *Process) TargetHealth(id string) (State, bool) {
	for _, t := range *p.snap.Load() {
		if t.ID == id {
			return t.State, true
		}
	}
	return "", false
}

// State returns the serving process's report (at most 100 ms old; the last
// one known when it does not answer).
func (p *Process) State() ProcessState {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	if time.Since(p.lastAt) < 100*time.Millisecond {
		return p.lastState
	}
	if c := p.current(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		st, err := getState(ctx, c.ctl)
		cancel()
		if err == nil {
			p.lastState, p.lastAt = st, time.Now()
			p.noteCounts(st.Targets)
		}
	}
	return p.lastState
}

// Stats returns the serving process's counters (since it started).
func (p *Process) Stats() Stats { return p.State().Stats }

// HTTPSAddr is the HTTPS listener's address.
func (p *Process) HTTPSAddr() string {
	if a := p.State().HTTPSAddr; a != "" {
		return a
	}
	return p.cfg.Config.HTTPSAddr
}

// HTTPSURL is "https://" and the HTTPS listener's address.
func (p *Process) HTTPSURL() string { return "https://" + p.HTTPSAddr() }

// HTTPAddr is the redirect listener's address ("" when off).
func (p *Process) HTTPAddr() string {
	if a := p.State().HTTPAddr; a != "" {
		return a
	}
	return p.cfg.Config.HTTPAddr
}

var _ interface {
	Start(context.Context) error
	Stop(context.Context) error
} = (*Process)(nil)

// SweepProcesses ends the load balancer processes recorded in dir that
// still run as recorded (a daemon died and `haven down` cleans up after
// it), and removes the records and sockets. A record whose pid runs
// another program now is removed; that program is not touched. It returns
// the pids it ended.
func SweepProcesses(ctx context.Context, dir string) ([]int, error) {
	recs, _ := filepath.Glob(filepath.Join(dir, "lb-*.json"))
	p := &Process{cfg: ProcessConfig{Dir: dir, StopTimeout: 5 * time.Second}, log: slog.New(slog.DiscardHandler)}
	var killed []int
	var errs []error
	for _, path := range recs {
		var rec record
		b, err := os.ReadFile(path)
		if err == nil && json.Unmarshal(b, &rec) == nil && rec.Identity.Check() == nil {
			if err := p.stopOne(ctx, rec.Identity); err != nil {
				errs = append(errs, err)
			} else {
				killed = append(killed, rec.Identity.PID)
			}
		}
		p.removeRecord(rec.Identity.PID)
		_ = os.Remove(path)
	}
	return killed, errors.Join(errs...)
}
