package objstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of Process.
const (
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 20 * time.Second
)

// Process runs the object store as its own process, in its own session, so
// it outlives the daemon that started it; a later daemon adopts it. Use one
// Process per state directory.
type Process struct {
	// Dir is the store's state directory; write its configuration with
	// WriteConfig before Start. Required.
	Dir string
	// Command is the argv that runs Main with --dir Dir. Default: this
	// executable with "objstore serve --dir Dir" (the CLI's hidden command).
	Command []string
	// Env is the child's environment. Default: this process's, without AWS_*
	// variables.
	Env []string
	// StartTimeout bounds how long Start waits for the store to serve.
	// Default 30s.
	StartTimeout time.Duration
	// StopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	// Default 20s.
	StopTimeout time.Duration
	// Logger receives lifecycle events. Default slog.Default().
	Logger *slog.Logger

	mu     sync.Mutex
	pid    int
	exited chan struct{} // closed when a child this Process started has been reaped
}

func (p *Process) log() *slog.Logger {
	l := p.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "objstore-process")
}

// Client returns a client for the store's control socket.
func (p *Process) Client() *Client { return NewClient(p.Dir) }

// PID returns the pid of the started or adopted store, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Validate checks that Dir holds a valid configuration (write it with
// WriteConfig), so Start fails here rather than in the child.
func (p *Process) Validate() error {
	if p.Dir == "" {
		return errors.New("objstore process: Dir is required")
	}
	if _, err := LoadConfig(p.Dir); err != nil {
		return fmt.Errorf("objstore process: %w", err)
	}
	return nil
}

// Start launches the store and waits until it serves. It fails if a store
// already serves Dir (adopt it instead), or if the child exits first; the
// error then carries the end of its log.
func (p *Process) Start(ctx context.Context) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	if running, pid := p.running(); running {
		return fmt.Errorf("start object store process: a store already serves %s (pid %d): adopt it or stop it", p.Dir, pid)
	}
	argv := p.Command
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("start object store process: %w", err)
		}
		argv = []string{exe, "objstore", "serve"}
	}
	argv = append(append([]string{}, argv...), "--dir", p.Dir)
	logf, err := os.OpenFile(filepath.Join(p.Dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start object store process: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = p.Env
	if cmd.Env == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start object store process %s: %w", argv[0], err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.pid, p.exited = cmd.Process.Pid, exited
	p.mu.Unlock()
	timeout := p.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := p.waitServing(wctx, cmd.Process.Pid, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("start object store process: %w%s", err, p.logTail())
	}
	p.log().Info("object store started", "pid", h.PID, "endpoint", h.Endpoint)
	return nil
}

// waitServing polls the control socket until the store with pid reports
// ready and its S3 endpoint accepts connections.
func (p *Process) waitServing(ctx context.Context, pid int, exited <-chan struct{}) (Health, error) {
	c := p.Client()
	defer c.Close()
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		h, err := c.Health(ctx)
		if err == nil && h.PID == pid && h.Ready {
			u := strings.TrimPrefix(h.Endpoint, "http://")
			var d net.Dialer
			if conn, derr := d.DialContext(ctx, "tcp", u); derr == nil {
				conn.Close()
				return h, nil
			}
		}
		select {
		case <-exited:
			return Health{}, errors.New("the store exited before it served")
		case <-ctx.Done():
			return Health{}, fmt.Errorf("the store did not serve in time: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}

// logTail returns the end of the store's log, for an error message.
func (p *Process) logTail() string {
	b, err := os.ReadFile(filepath.Join(p.Dir, LogFile))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 16384 {
		b = b[len(b)-16384:]
	}
	return "\nobject store log (" + filepath.Join(p.Dir, LogFile) + "):\n" + strings.TrimSpace(string(b))
}

// running reports whether a store holds Dir's lock, and the pid in its pid file.
func (p *Process) running() (bool, int) {
	pid := readPID(p.Dir)
	f, err := os.OpenFile(filepath.Join(p.Dir, LockFile), os.O_RDWR, 0)
	if err != nil {
		return false, pid
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true, pid
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, pid
}

func readPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// Adopt takes over a store already serving Dir (started by an earlier
// daemon). It reports false, with no error, when none serves; an error means
// one holds the directory but does not answer as it should.
func (p *Process) Adopt(ctx context.Context) (bool, error) {
	running, pid := p.running()
	if !running {
		return false, nil
	}
	if pid == 0 {
		return false, fmt.Errorf("adopt object store: %s is locked but has no pid file", p.Dir)
	}
	c := p.Client()
	defer c.Close()
	h, err := c.Health(ctx)
	if err != nil {
		return false, fmt.Errorf("adopt object store (pid %d): %w", pid, err)
	}
	if h.PID != pid {
		return false, fmt.Errorf("adopt object store: the control socket answers for pid %d, the pid file says %d", h.PID, pid)
	}
	if !h.Ready {
		return false, fmt.Errorf("adopt object store (pid %d): it does not serve yet", pid)
	}
	p.mu.Lock()
	p.pid, p.exited = pid, nil
	p.mu.Unlock()
	p.log().Info("object store adopted", "pid", pid, "endpoint", h.Endpoint)
	return true, nil
}

// Stop ends the store serving Dir (started or adopted): SIGTERM, then SIGKILL
// after StopTimeout. It is a no-op when none serves.
func (p *Process) Stop(ctx context.Context) error {
	running, pid := p.running()
	p.mu.Lock()
	exited := p.exited
	if pid == 0 {
		pid = p.pid
	}
	p.mu.Unlock()
	if !running || pid == 0 {
		if exited != nil {
			<-exited
		}
		return nil
	}
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if p.waitGone(ctx, pid, exited, timeout) {
		p.log().Info("object store stopped", "pid", pid)
		p.forget()
		return nil
	}
	p.log().Warn("object store did not stop after SIGTERM; killing it", "pid", pid, "waited", timeout)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !p.waitGone(ctx, pid, exited, 5*time.Second) {
		return fmt.Errorf("stop object store: pid %d survived SIGKILL", pid)
	}
	_ = os.Remove(filepath.Join(p.Dir, PIDFile))
	p.forget()
	return nil
}

func (p *Process) forget() {
	p.mu.Lock()
	p.pid, p.exited = 0, nil
	p.mu.Unlock()
}

// waitGone waits until pid has exited (and, for a child of ours, been reaped).
func (p *Process) waitGone(ctx context.Context, pid int, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
			}
		} else if syscall.Kill(pid, 0) == syscall.ESRCH {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Compile-time guard: Process has haven's component lifecycle.
var _ interface {
	Validate() error
	Start(context.Context) error
	Stop(context.Context) error
} = (*Process)(nil)
