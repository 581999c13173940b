package lb

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-platform/haven/internal/unixsock"
)

// DefaultDrainTimeout bounds how long a process handing over (Drain) waits
// for its client connections to close.
const DefaultDrainTimeout = 30 * time.Second

// ServeOptions configures Serve.
type ServeOptions struct {
	// Dir is the load balancer's directory (the region's <state>/lb): the
	// process serves its control socket at Dir/lb-<pid>.sock and hands its
	// listening sockets to a successor at Dir/lb-<pid>.fds, both 0600 and
	// peer-checked. Required.
	Dir string
	// Spec is what to serve. Required.
	Spec ProcessSpec
	// Listeners are inherited listening sockets by name ("https", "http");
	// a listener the spec's settings ask for and that is not here is bound
	// at the settings' address. Serve takes ownership of the files.
	Listeners map[string]*os.File
	// Version is this build's version, reported in the state. Default "".
	Version string
	// DrainTimeout bounds a hand-over's drain. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Serve is the main of a load balancer process (`haven lb serve`): it
// serves HTTPS (and the redirect listener) with the spec's settings and
// targets, health-checks on its own, and takes its targets from the
// daemon over its control socket; it keeps serving with what it has when
// the daemon is gone. It returns when ctx ends (a prompt stop, as
// `haven down` asks with SIGTERM) or once a hand-over's drain is over
// (POST /v1/drain: a successor serves the same sockets).
func Serve(ctx context.Context, o ServeOptions) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Dir == "" {
		return errors.New("serve load balancer: Dir is required")
	}
	log := o.Logger.With("component", "lb-process")
	files := o.Listeners
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	defer closeFiles()
	cert, err := tls.X509KeyPair(o.Spec.CertPEM, o.Spec.KeyPEM)
	if err != nil {
		return fmt.Errorf("serve load balancer: certificate: %w", err)
	}
	cfg := o.Spec.Settings.Config()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	cfg.Logger = o.Logger
	var access *os.File
	if o.Spec.AccessLog != "" {
		if access, err = os.OpenFile(o.Spec.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return fmt.Errorf("serve load balancer: access log: %w", err)
		}
		defer access.Close()
		cfg.AccessLog, cfg.AccessLogFlush = access, DefaultProcessAccessLogFlush
	}
	l, err := New(cfg)
	if err != nil {
		return fmt.Errorf("serve load balancer: %w", err)
	}
	for _, t := range o.Spec.Targets {
		if t.State == StateDraining {
			continue
		}
		if err := l.Restore(t); err != nil {
			return fmt.Errorf("serve load balancer: %w", err)
		}
	}
	listen := func(name, addr string) (net.Listener, error) {
		if f := files[name]; f != nil {
			ln, err := net.FileListener(f)
			if err != nil {
				return nil, fmt.Errorf("inherited %s listener: %w", name, err)
			}
			return ln, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s %s: %w", name, addr, err)
		}
		return ln, nil
	}
	httpsLn, err := listen("https", cfg.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("serve load balancer: %w", err)
	}
	var httpLn net.Listener
	if cfg.HTTPAddr != "" {
		if httpLn, err = listen("http", cfg.HTTPAddr); err != nil {
			httpsLn.Close()
			return fmt.Errorf("serve load balancer: %w", err)
		}
	}
	// Descriptors of the same sockets, for a successor (GET on the .fds
	// socket); closed once this process no longer hands them out.
	handout := map[string]*os.File{}
	for name, ln := range map[string]net.Listener{"https": httpsLn, "http": httpLn} {
		if ln == nil {
			continue
		}
		f, err := unixsock.ListenerFile(ln)
		if err != nil {
			return fmt.Errorf("serve load balancer: %w", err)
		}
		handout[name] = f
	}
	closeFiles()
	files = handout

	p := &lbProcess{l: l, log: log, version: o.Version, settings: o.Spec.Settings, started: time.Now(), drain: make(chan struct{}), watchers: map[chan watchEvent]struct{}{}}
	l.OnChange(p.broadcast)
	if err := l.StartOn(ctx, httpsLn, httpLn); err != nil {
		httpsLn.Close()
		if httpLn != nil {
			httpLn.Close()
		}
		return fmt.Errorf("serve load balancer: %w", err)
	}
	pid := strconv.Itoa(os.Getpid())
	ctlPath, fdsPath := filepath.Join(o.Dir, "lb-"+pid+".sock"), filepath.Join(o.Dir, "lb-"+pid+".fds")
	ctl, err := unixsock.Listen(ctlPath)
	if err != nil {
		_ = l.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("serve load balancer: %w", err)
	}
	defer os.Remove(ctlPath)
	fdsLn, err := unixsock.Listen(fdsPath)
	if err != nil {
		ctl.Close()
		_ = l.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("serve load balancer: %w", err)
	}
	defer os.Remove(fdsPath)
	srv := &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() { _ = srv.Serve(ctl) }()
	var fdsWG sync.WaitGroup
	fdsWG.Add(1)
	go func() {
		defer fdsWG.Done()
		names, fs := []string{}, []*os.File{}
		for _, n := range []string{"https", "http"} {
			if f := files[n]; f != nil {
				names, fs = append(names, n), append(fs, f)
			}
		}
		for {
			c, err := fdsLn.Accept()
			if err != nil {
				return
			}
			if err := unixsock.SendFiles(c.(*net.UnixConn), names, fs); err != nil {
				log.Warn("hand listeners over", "err", err)
			}
			c.Close()
		}
	}()
	p.ready.Store(true)
	log.Info("load balancer process serving", "pid", os.Getpid(), "version", o.Version, "https", l.HTTPSAddr(), "http", l.HTTPAddr(),
		"targets", len(o.Spec.Targets), "inherited", len(o.Listeners), "digest", o.Spec.Settings.Digest())

	var stopErr error
	select {
	case <-ctx.Done():
		fdsLn.Close()
		fdsWG.Wait()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stopErr = l.Stop(sctx)
		cancel()
		log.Info("load balancer process stopped")
	case <-p.drain:
		// The successor has the sockets: stop handing them out, then drain.
		fdsLn.Close()
		fdsWG.Wait()
		dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
		stopErr = l.Drain(dctx)
		cancel()
		log.Info("load balancer process drained", "handed_over", true)
	}
	p.closeWatchers()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	return stopErr
}

// lbProcess is the control side of a serving load balancer process.
type lbProcess struct {
	l       *LB
	log     *slog.Logger
	version string
	started time.Time
	ready   atomic.Bool

	// settings are the ones in force: the spec's, then each
	// SetTargetGroup's (guarded by mu); their digest is reported, so a
	// later daemon whose spec asks for the same keeps this process.
	settings Settings

	drainOnce sync.Once
	drain     chan struct{}

	mu       sync.Mutex
	watchers map[chan watchEvent]struct{}
}

func (p *lbProcess) state() ProcessState {
	exe, _ := os.Executable()
	return ProcessState{
		PID: os.Getpid(), Version: p.version, Exe: exe, StartedAt: p.started, Ready: p.ready.Load(),
		Draining: p.l.Draining(), Digest: p.digest(), HTTPSAddr: p.l.HTTPSAddr(), HTTPAddr: p.l.HTTPAddr(),
		Conns: p.l.Conns(), Targets: p.l.Targets(), Stats: p.l.Stats(),
	}
}

func (p *lbProcess) digest() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings.Digest()
}

// broadcast sends a target change to every watcher; a watcher that cannot
// keep up is dropped (it reconnects and gets a snapshot).
func (p *lbProcess) broadcast(st TargetStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ch := range p.watchers {
		select {
		case ch <- watchEvent{Kind: "target", Target: &st}:
		default:
			delete(p.watchers, ch)
			close(ch)
		}
	}
}

func (p *lbProcess) closeWatchers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ch := range p.watchers {
		close(ch)
	}
	p.watchers = map[chan watchEvent]struct{}{}
}

func (p *lbProcess) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, _ *http.Request) {
		writeCtlJSON(w, http.StatusOK, p.state())
	})
	mux.HandleFunc("POST /v1/targets", func(w http.ResponseWriter, r *http.Request) {
		var t Target
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			writeCtlError(w, http.StatusBadRequest, fmt.Errorf("decode target: %w", err))
			return
		}
		err := p.l.Register(t)
		if errors.Is(err, ErrDuplicateTarget) {
			// Registering again what is registered, as it is, is a no-op:
			// a daemon that restarted re-registers the instances it adopts.
			for _, cur := range p.l.Targets() {
				if cur.ID == t.ID && cur.Zone == t.Zone && cur.Addr == t.Addr && cur.State != StateDraining {
					writeCtlJSON(w, http.StatusOK, cur)
					return
				}
			}
			writeCtlError(w, http.StatusConflict, err)
			return
		}
		if err != nil {
			writeCtlError(w, http.StatusBadRequest, err)
			return
		}
		st, _ := p.target(t.ID)
		writeCtlJSON(w, http.StatusCreated, st)
	})
	mux.HandleFunc("POST /v1/targets/{id}/deregister", func(w http.ResponseWriter, r *http.Request) {
		err := p.l.Deregister(r.Context(), r.PathValue("id"))
		switch {
		case errors.Is(err, ErrUnknownTarget):
			writeCtlError(w, http.StatusNotFound, err)
		case err != nil:
			writeCtlError(w, http.StatusServiceUnavailable, err)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /v1/watch", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan watchEvent, 256)
		p.mu.Lock()
		p.watchers[ch] = struct{}{}
		snap := p.l.Targets()
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			if _, ok := p.watchers[ch]; ok {
				delete(p.watchers, ch)
				close(ch)
			}
			p.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		rc := http.NewResponseController(w)
		if err := enc.Encode(watchEvent{Kind: "snapshot", Snapshot: snap}); err != nil {
			return
		}
		_ = rc.Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev, ok := <-ch:
				if !ok {
					return
				}
				if err := enc.Encode(ev); err != nil {
					return
				}
				_ = rc.Flush()
			}
		}
	})
	mux.HandleFunc("GET /v1/metrics", func(w http.ResponseWriter, _ *http.Request) {
		writeCtlJSON(w, http.StatusOK, p.l.Metrics())
	})
	mux.HandleFunc("POST /v1/target-group", func(w http.ResponseWriter, r *http.Request) {
		var s Settings
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&s); err != nil {
			writeCtlError(w, http.StatusBadRequest, fmt.Errorf("decode target group settings: %w", err))
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if err := p.l.SetTargetGroup(s.Config()); err != nil {
			writeCtlError(w, http.StatusBadRequest, err)
			return
		}
		p.settings = p.settings.withTargetGroup(s)
		writeCtlJSON(w, http.StatusOK, p.settings)
	})
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, _ *http.Request) {
		p.drainOnce.Do(func() { close(p.drain) })
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

func (p *lbProcess) target(id string) (TargetStatus, bool) {
	for _, t := range p.l.Targets() {
		if t.ID == id {
			return t, true
		}
	}
	return TargetStatus{}, false
}

func writeCtlJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type ctlError struct {
	Error string `json:"error"`
}

func writeCtlError(w http.ResponseWriter, code int, err error) {
	writeCtlJSON(w, code, ctlError{Error: err.Error()})
}
