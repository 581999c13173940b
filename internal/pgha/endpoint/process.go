package endpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/unixsock"
)

// ProcessState is what a proxy process reports on its control socket.
type ProcessState struct {
	PID  int    `json:"pid"`
	Addr string `json:"addr"`
	// Addrs are every address it serves, the newest last (Addr is the
	// first): more than one while the endpoint moves.
	Addrs    []string `json:"addrs,omitempty"`
	Epoch    uint64   `json:"epoch"`
	Target   string   `json:"target"`
	Paused   bool     `json:"paused"`
	Sessions int      `json:"sessions"`
}

// addrRequest is POST /v1/addrs/add and /v1/addrs/remove.
type addrRequest struct {
	Addr string `json:"addr"`
}

// targetRequest is POST /v1/target.
type targetRequest struct {
	Epoch  uint64 `json:"epoch"`
	Target string `json:"target"`
}

// ServeOptions configures ServeProcess.
type ServeOptions struct {
	// Dir holds the control socket, Dir/ep-<pid>.sock (0600, peer-checked).
	// Required.
	Dir string
	// Listener is the endpoint's listening socket, inherited. Required.
	Listener *os.File
	// More are the sockets of other addresses it serves too (the endpoint
	// was moving when the process was restarted). Default none.
	More []*os.File
	// Epoch and Target are the primary to forward to from the start (the
	// daemon's last word, for a process restarted after it died).
	Epoch  uint64
	Target string
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// ServeProcess is the main of the database endpoint's proxy process
// (`haven endpoint serve`): a Proxy on the inherited listener, told its
// target by the daemon over a control socket. It keeps forwarding to the
// last target when the daemon is gone, so the connections through it (the
// host's: drills, `haven db`, an operator's psql) outlive a daemon that
// crashes or is upgraded. It returns when ctx ends.
func ServeProcess(ctx context.Context, o ServeOptions) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Dir == "" || o.Listener == nil {
		return errors.New("serve endpoint: Dir and Listener are required")
	}
	ln, err := net.FileListener(o.Listener)
	o.Listener.Close()
	if err != nil {
		return fmt.Errorf("serve endpoint: inherited listener: %w", err)
	}
	p, err := New(Config{Listener: ln, Logger: o.Logger})
	if err != nil {
		ln.Close()
		return err
	}
	p.SetTarget(o.Epoch, o.Target)
	if err := p.Start(ctx); err != nil {
		return err
	}
	for _, f := range o.More {
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			_ = p.Stop(context.WithoutCancel(ctx))
			return fmt.Errorf("serve endpoint: inherited listener: %w", err)
		}
		p.serveAlso(l)
	}
	ctlPath := filepath.Join(o.Dir, "ep-"+strconv.Itoa(os.Getpid())+".sock")
	ctl, err := unixsock.Listen(ctlPath)
	if err != nil {
		_ = p.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("serve endpoint: %w", err)
	}
	defer os.Remove(ctlPath)
	mux := http.NewServeMux()
	state := func() ProcessState {
		e, t := p.Target()
		p.mu.Lock()
		paused := p.paused
		p.mu.Unlock()
		addrs := p.Addrs()
		return ProcessState{PID: os.Getpid(), Addr: addrs[0], Addrs: addrs, Epoch: e, Target: t, Paused: paused, Sessions: p.Sessions()}
	}
	addrRoute := func(do func(context.Context, string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req addrRequest
			if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := do(r.Context(), req.Addr); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			writeJSON(w, state())
		}
	}
	mux.HandleFunc("POST /v1/addrs/add", addrRoute(p.AddAddr))
	mux.HandleFunc("POST /v1/addrs/remove", addrRoute(p.RemoveAddr))
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, state()) })
	mux.HandleFunc("POST /v1/target", func(w http.ResponseWriter, r *http.Request) {
		var req targetRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.SetTarget(req.Epoch, req.Target)
		writeJSON(w, state())
	})
	mux.HandleFunc("POST /v1/pause", func(w http.ResponseWriter, _ *http.Request) {
		p.Pause()
		writeJSON(w, state())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ctl) }()
	o.Logger.Info("endpoint proxy process serving", "component", "pgha.endpoint", "pid", os.Getpid(), "addr", p.Addr(), "epoch", o.Epoch, "target", o.Target)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return p.Stop(sctx)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ProcessConfig configures ProxyProcess.
type ProcessConfig struct {
	// Dir holds the processes' control sockets, records and log (the
	// region's <state>/endpoint). Created 0700. Required.
	Dir string
	// Listen is the endpoint's address, e.g. "127.0.0.1:6432". Required.
	Listen string
	// Command is the argv of a proxy process, to which ServeProcess's flags
	// are appended. Default: this executable with "endpoint serve" (the
	// CLI's hidden command).
	Command []string
	// Env holds extra environment variables for the processes. Default none.
	Env []string
	// Bind makes the listening socket of Listen, where it must live (a
	// node's namespace in a VPC: Namespace.Listen); the process, started
	// on the host, inherits it. Default: a TCP listener in the daemon's
	// own namespace.
	Bind func(ctx context.Context, addr string) (net.Listener, error)
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// ProxyProcess runs the endpoint's proxy as its own process, so the
// connections through it outlive the daemon: a daemon that crashes or is
// upgraded leaves it forwarding to the last primary, and the next daemon
// adopts it from its record (pid, start time, cgroup, network namespace)
// instead of starting another, which would cut them. The daemon keeps a
// descriptor of the listening socket: a proxy that dies leaves new
// connections queued, not refused, until the replacement it starts at
// once accepts them. It has the methods of Proxy the region uses
// (SetTarget, Pause, Addr, Start, Stop).
type ProxyProcess struct {
	cfg ProcessConfig
	log *slog.Logger

	mu sync.Mutex
	// lns are the daemon's descriptors of the listening sockets, one per
	// address of addrs (the newest last: more than one while the endpoint
	// moves); a restarted process gets them all.
	lns      []*os.File
	addrs    []string
	cur      *proxyChild
	epoch    uint64
	target   string
	paused   bool
	adopted  int
	stopping bool
	superv   context.CancelFunc
	supDone  chan struct{}
}

type proxyChild struct {
	id   proc.Identity
	ctl  *http.Client
	gone <-chan struct{}
}

type proxyRecord struct {
	Identity proc.Identity `json:"identity"`
	Addr     string        `json:"addr"`
	// Addrs are every address it serves (empty in a record written before
	// the endpoint could move: Addr alone).
	Addrs []string `json:"addrs,omitempty"`
}

// NewProcess checks cfg; it starts nothing.
func NewProcess(cfg ProcessConfig) (*ProxyProcess, error) {
	if cfg.Dir == "" || cfg.Listen == "" {
		return nil, errors.New("endpoint process: Dir and Listen are required")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("endpoint.listen: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &ProxyProcess{cfg: cfg, log: cfg.Logger.With("component", "pgha.endpoint-process"), addrs: []string{cfg.Listen}}, nil
}

// Start adopts the proxy process an earlier daemon left (it keeps its
// target until the controller sets one), or binds the address and starts
// one with no primary. Then it supervises it.
func (pp *ProxyProcess) Start(ctx context.Context) error {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if err := os.MkdirAll(pp.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("start endpoint process: %w", err)
	}
	recs, _ := filepath.Glob(filepath.Join(pp.cfg.Dir, "ep-*.json"))
	for _, path := range recs {
		var rec proxyRecord
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		pid := rec.Identity.PID
		if err != nil || rec.Identity.Check() != nil || pp.cur != nil || !slices.Contains(rec.allAddrs(), pp.cfg.Listen) {
			if err == nil && errors.Is(rec.Identity.Check(), proc.ErrNotSame) {
				pp.log.Warn("endpoint record names a process that is not ours any more: left alone", "pid", pid)
			} else if err == nil && rec.Identity.Check() == nil {
				// Ours, but a second one or for another address: stop it.
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
			_ = os.Remove(path)
			continue
		}
		ctl := unixsock.HTTPClient(pp.ctlPath(pid), 3*time.Second)
		var st ProcessState
		if err := ctlCall(ctx, ctl, http.MethodGet, "/v1/state", nil, &st); err != nil || st.PID != pid {
			pp.log.Warn("endpoint process does not answer on its control socket: left alone", "pid", pid, "err", err)
			_ = os.Remove(path)
			continue
		}
		addrs := st.Addrs
		if len(addrs) == 0 {
			addrs = []string{st.Addr}
		}
		var lns []*os.File
		for _, a := range addrs {
			ln, err := listenerOf(pid, a)
			if err != nil {
				// Without it a process started after this one dies
				// could not serve a; the adopted one keeps serving.
				pp.log.Warn("take the endpoint process's listening socket; it keeps serving", "pid", pid, "addr", a, "err", err)
				closeFiles(lns)
				lns = nil
				break
			}
			lns = append(lns, ln)
		}
		gone, err := rec.Identity.Gone(context.Background())
		if err != nil {
			closeFiles(lns)
			continue
		}
		pp.cur = &proxyChild{id: rec.Identity, ctl: ctl, gone: gone}
		pp.lns, pp.addrs, pp.epoch, pp.target, pp.paused, pp.adopted = lns, slices.Clone(addrs), st.Epoch, st.Target, st.Paused, pid
		pp.log.Info("adopted the endpoint's proxy process", "pid", pid, "epoch", st.Epoch, "target", st.Target, "sessions", st.Sessions)
	}
	if pp.cur == nil {
		bind := pp.cfg.Bind
		if bind == nil {
			bind = func(ctx context.Context, addr string) (net.Listener, error) {
				var lc net.ListenConfig
				return lc.Listen(ctx, "tcp", addr)
			}
		}
		l, err := bind(ctx, pp.cfg.Listen)
		if err != nil {
			return fmt.Errorf("start endpoint on %s: %w", pp.cfg.Listen, err)
		}
		f, err := unixsock.ListenerFile(l)
		pp.addrs = []string{l.Addr().String()}
		l.Close()
		if err != nil {
			return fmt.Errorf("start endpoint: %w", err)
		}
		pp.lns = []*os.File{f}
		c, err := pp.launchLocked(ctx)
		if err != nil {
			closeFiles(pp.lns)
			pp.lns = nil
			return err
		}
		pp.cur = c
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pp.superv, pp.supDone = cancel, make(chan struct{})
	go pp.supervise(sctx)
	return nil
}

func (r proxyRecord) allAddrs() []string {
	if len(r.Addrs) > 0 {
		return r.Addrs
	}
	return []string{r.Addr}
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// AddAddr makes the proxy process listen on addr too (Proxy.AddAddr): no
// connection is cut. The daemon keeps a descriptor of the new socket, so a
// process started after this one dies serves both.
func (pp *ProxyProcess) AddAddr(ctx context.Context, addr string) error {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if slices.Contains(pp.addrs, addr) {
		return nil
	}
	if pp.cur == nil {
		return fmt.Errorf("add endpoint address %s: no proxy process serves the endpoint", addr)
	}
	var st ProcessState
	if err := ctlCall(ctx, pp.cur.ctl, http.MethodPost, "/v1/addrs/add", addrRequest{Addr: addr}, &st); err != nil {
		return fmt.Errorf("add endpoint address %s: %w", addr, err)
	}
	ln, err := listenerOf(pp.cur.id.PID, addr)
	if err != nil {
		_ = ctlCall(context.WithoutCancel(ctx), pp.cur.ctl, http.MethodPost, "/v1/addrs/remove", addrRequest{Addr: addr}, nil)
		return fmt.Errorf("add endpoint address %s: %w", addr, err)
	}
	pp.lns, pp.addrs = append(pp.lns, ln), append(pp.addrs, addr)
	pp.recordLocked(pp.cur.id)
	pp.log.Info("endpoint address added", "addr", addr, "pid", pp.cur.id.PID)
	return nil
}

// RemoveAddr closes the proxy process's listener on addr and every client
// connection (Proxy.RemoveAddr). The endpoint keeps at least one address.
func (pp *ProxyProcess) RemoveAddr(ctx context.Context, addr string) error {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	i := slices.Index(pp.addrs, addr)
	if i < 0 {
		return nil
	}
	if len(pp.addrs) == 1 {
		return fmt.Errorf("remove endpoint address %s: it is the endpoint's only address", addr)
	}
	if pp.cur != nil {
		if err := ctlCall(ctx, pp.cur.ctl, http.MethodPost, "/v1/addrs/remove", addrRequest{Addr: addr}, nil); err != nil {
			return fmt.Errorf("remove endpoint address %s: %w", addr, err)
		}
	}
	if i < len(pp.lns) {
		pp.lns[i].Close()
		pp.lns = slices.Delete(pp.lns, i, i+1)
	}
	pp.addrs = slices.Delete(pp.addrs, i, i+1)
	if pp.cur != nil {
		pp.recordLocked(pp.cur.id)
	}
	pp.log.Info("endpoint address removed", "addr", addr)
	return nil
}

// recordLocked writes the serving process's record (pp.mu held).
func (pp *ProxyProcess) recordLocked(id proc.Identity) {
	b, _ := json.Marshal(proxyRecord{Identity: id, Addr: pp.addrs[0], Addrs: pp.addrs})
	if err := atomicfile.WriteFile(pp.recPath(id.PID), b, 0o600); err != nil {
		pp.log.Warn("record the endpoint process", "pid", id.PID, "err", err)
	}
}

// listenerOf takes a descriptor of the listening socket pid holds for
// addr, with pidfd_getfd(2) (Linux 5.6; root, or the process's own user
// where ptrace allows it).
func listenerOf(pid int, addr string) (*os.File, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return nil, err
	}
	for _, e := range fds {
		target, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			return nil, fmt.Errorf("pidfd_getfd %d of %d: %w", n, pid, err)
		}
		// A connection it accepted has the same local address: only a
		// socket that listens will do.
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
			unix.Close(fd)
			continue
		}
		f := os.NewFile(uintptr(fd), "listener")
		if l, err := net.FileListener(f); err == nil {
			ok := l.Addr().String() == addr
			l.Close()
			if ok {
				return f, nil
			}
		}
		f.Close()
	}
	return nil, fmt.Errorf("process %d holds no listener on %s", pid, addr)
}

// Adopted is the pid of the proxy process Start adopted (0: it started one).
func (pp *ProxyProcess) Adopted() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.adopted
}

// PID is the serving proxy process's pid (0 when none).
func (pp *ProxyProcess) PID() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.cur == nil {
		return 0
	}
	return pp.cur.id.PID
}

// Addr is the endpoint's address: the newest while it moves.
func (pp *ProxyProcess) Addr() string {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.addrs[len(pp.addrs)-1]
}

func (pp *ProxyProcess) ctlPath(pid int) string {
	return filepath.Join(pp.cfg.Dir, "ep-"+strconv.Itoa(pid)+".sock")
}

func (pp *ProxyProcess) recPath(pid int) string {
	return filepath.Join(pp.cfg.Dir, "ep-"+strconv.Itoa(pid)+".json")
}

func (pp *ProxyProcess) launchLocked(ctx context.Context) (*proxyChild, error) {
	argv := pp.cfg.Command
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		argv = []string{exe, "endpoint", "serve"}
	}
	argv = append(slices.Clone(argv), "--dir", pp.cfg.Dir, "--listener-fd", "3", "--listeners", strconv.Itoa(len(pp.lns)),
		"--epoch", strconv.FormatUint(pp.epoch, 10), "--target", pp.target)
	logf, err := os.OpenFile(filepath.Join(pp.cfg.Dir, "endpoint.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start endpoint process: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = slices.Clone(pp.lns) // descriptors 3, 4, ...
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, pp.cfg.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives the daemon
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start endpoint process: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	ctl := unixsock.HTTPClient(pp.ctlPath(pid), 3*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st ProcessState
		if err := ctlCall(ctx, ctl, http.MethodGet, "/v1/state", nil, &st); err == nil && st.PID == pid {
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("start endpoint process: it exited before it served (see %s)", filepath.Join(pp.cfg.Dir, "endpoint.log"))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return nil, errors.New("start endpoint process: it did not serve within 15s")
		}
	}
	id, err := proc.IdentityOf(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("start endpoint process: %w", err)
	}
	b, _ := json.Marshal(proxyRecord{Identity: id, Addr: pp.addrs[0], Addrs: pp.addrs})
	if err := atomicfile.WriteFile(pp.recPath(pid), b, 0o600); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("start endpoint process: record it: %w", err)
	}
	pp.log.Info("endpoint proxy process started", "pid", pid, "addrs", pp.addrs, "epoch", pp.epoch, "target", pp.target)
	return &proxyChild{id: id, ctl: ctl, gone: exited}, nil
}

// supervise starts a new proxy process, on the same socket and with the
// last target, as soon as the serving one exits.
func (pp *ProxyProcess) supervise(ctx context.Context) {
	defer close(pp.supDone)
	for {
		pp.mu.Lock()
		c := pp.cur
		pp.mu.Unlock()
		var gone <-chan struct{}
		if c != nil {
			gone = c.gone
		}
		select {
		case <-ctx.Done():
			return
		case <-gone:
		case <-time.After(time.Second):
			if c != nil {
				continue
			}
		}
		pp.mu.Lock()
		if pp.stopping || ctx.Err() != nil || len(pp.lns) == 0 {
			pp.mu.Unlock()
			return
		}
		if c != nil {
			_ = os.Remove(pp.recPath(c.id.PID))
			pp.log.Warn("endpoint proxy process exited; starting another on the same socket", "pid", c.id.PID)
		}
		nc, err := pp.launchLocked(ctx)
		if err != nil {
			pp.cur = nil
			pp.log.Error("restart endpoint process", "err", err)
		} else {
			pp.cur = nc
		}
		pp.mu.Unlock()
	}
}

// SetTarget makes addr the primary for epoch ("" = none); the process cuts
// every connection when either changes. It is remembered for a process
// started later.
func (pp *ProxyProcess) SetTarget(epoch uint64, addr string) {
	pp.mu.Lock()
	pp.epoch, pp.target, pp.paused = epoch, addr, false
	c := pp.cur
	pp.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ctlCall(ctx, c.ctl, http.MethodPost, "/v1/target", targetRequest{Epoch: epoch, Target: addr}, nil); err != nil {
		pp.log.Error("set the endpoint process's target", "pid", c.id.PID, "err", err)
	}
}

// Pause cuts every connection and holds new ones until the next SetTarget.
func (pp *ProxyProcess) Pause() {
	pp.mu.Lock()
	pp.paused = true
	c := pp.cur
	pp.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ctlCall(ctx, c.ctl, http.MethodPost, "/v1/pause", nil, nil); err != nil {
		pp.log.Error("pause the endpoint process", "pid", c.id.PID, "err", err)
	}
}

// Stop ends the proxy process (its connections close) and closes the socket.
func (pp *ProxyProcess) Stop(ctx context.Context) error {
	pp.detach(true)
	recs, _ := filepath.Glob(filepath.Join(pp.cfg.Dir, "ep-*.json"))
	var errs []error
	for _, path := range recs {
		var rec proxyRecord
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &rec) == nil {
			if gone, err := rec.Identity.Gone(context.Background()); err == nil {
				_ = syscall.Kill(rec.Identity.PID, syscall.SIGTERM)
				select {
				case <-gone:
				case <-ctx.Done():
					errs = append(errs, fmt.Errorf("stop endpoint process %d: %w", rec.Identity.PID, ctx.Err()))
				case <-time.After(10 * time.Second):
					if rec.Identity.Check() == nil {
						_ = syscall.Kill(rec.Identity.PID, syscall.SIGKILL)
					}
				}
			}
		}
		_ = os.Remove(path)
	}
	return errors.Join(errs...)
}

// Detach lets go of the proxy process without stopping it (a daemon that
// hands over to another).
func (pp *ProxyProcess) Detach() { pp.detach(false) }

func (pp *ProxyProcess) detach(stopping bool) {
	pp.mu.Lock()
	pp.stopping = true
	cancel, done := pp.superv, pp.supDone
	pp.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	pp.mu.Lock()
	closeFiles(pp.lns)
	pp.lns = nil
	pp.cur = nil
	pp.mu.Unlock()
	_ = stopping
}

func ctlCall(ctx context.Context, ctl *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://endpoint"+path, body)
	if err != nil {
		return err
	}
	resp, err := ctl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("endpoint process: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// SweepProcesses ends the proxy processes recorded in dir that still run
// as recorded (after a daemon died), and removes the records. A record
// whose pid runs another program now is removed; that program is not
// touched. It returns the pids it ended.
func SweepProcesses(ctx context.Context, dir string) ([]int, error) {
	recs, _ := filepath.Glob(filepath.Join(dir, "ep-*.json"))
	var killed []int
	for _, path := range recs {
		var rec proxyRecord
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &rec) == nil && rec.Identity.Check() == nil {
			if gone, err := rec.Identity.Gone(context.Background()); err == nil {
				_ = syscall.Kill(rec.Identity.PID, syscall.SIGKILL)
				select {
				case <-gone:
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				killed = append(killed, rec.Identity.PID)
			}
		}
		_ = os.Remove(path)
		_ = os.Remove(strings.TrimSuffix(path, ".json") + ".sock")
	}
	return killed, nil
}
