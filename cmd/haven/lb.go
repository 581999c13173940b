package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/version"
)

// newLBCmd is the load balancer process's entry point: the daemon starts
// `haven lb serve` with its spec on a pipe and the listening sockets as
// inherited descriptors; scripts/bench-lb starts it standalone with flags.
func newLBCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lb", Short: "The load balancer process (started by the daemon)", Hidden: true}
	var (
		dir, httpsAddr, httpAddr, cert, key, accessLog, healthPath, matcher, pprofAddr string
		specFD                                                                         int
		targets                                                                        []string
		interval                                                                       time.Duration
	)
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve HTTPS as the region's load balancer until SIGTERM, or until a successor takes over",
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			var ps lb.ProcessSpec
			files := map[string]*os.File{}
			if specFD > 0 {
				f := os.NewFile(uintptr(specFD), "spec")
				if f == nil {
					return fmt.Errorf("lb serve: descriptor %d is not open", specFD)
				}
				b, err := io.ReadAll(io.LimitReader(f, 16<<20))
				f.Close()
				if err != nil {
					return fmt.Errorf("lb serve: read the spec from descriptor %d: %w", specFD, err)
				}
				if err := json.Unmarshal(b, &ps); err != nil {
					return fmt.Errorf("lb serve: decode the spec: %w", err)
				}
				for i, name := range ps.Listeners {
					fd := specFD + 1 + i
					f := os.NewFile(uintptr(fd), name)
					if f == nil {
						return fmt.Errorf("lb serve: listener %s: descriptor %d is not open", name, fd)
					}
					files[name] = f
				}
			} else {
				var err error
				if ps, err = standaloneSpec(httpsAddr, httpAddr, cert, key, accessLog, healthPath, matcher, interval, targets); err != nil {
					return err
				}
			}
			if dir == "" {
				return errors.New("lb serve: --dir is required")
			}
			if pprofAddr != "" {
				// Profiling for benchmarks (scripts/bench-lb PROFILE=...), on
				// loopback only.
				ln, err := net.Listen("tcp", pprofAddr)
				if err != nil {
					return fmt.Errorf("lb serve: --pprof: %w", err)
				}
				if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
					ln.Close()
					return fmt.Errorf("lb serve: --pprof %s: loopback addresses only", pprofAddr)
				}
				mux := http.NewServeMux()
				mux.HandleFunc("/debug/pprof/", pprof.Index)
				mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
				go func() { _ = http.Serve(ln, mux) }()
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			return lb.Serve(cmd.Context(), lb.ServeOptions{Dir: dir, Spec: ps, Listeners: files, Version: version.String(), Logger: logger})
		},
	}
	f := serve.Flags()
	f.StringVar(&dir, "dir", "", "the load balancer's directory: control sockets lb-<pid>.sock and lb-<pid>.fds")
	f.IntVar(&specFD, "spec-fd", 0, "read the spec (JSON) from this inherited descriptor; its listeners follow it")
	f.StringVar(&httpsAddr, "https", "127.0.0.1:8443", "standalone: the HTTPS listener")
	f.StringVar(&httpAddr, "http", "", "standalone: the redirect listener (off when empty)")
	f.StringVar(&cert, "cert", "", "standalone: the certificate chain (PEM file)")
	f.StringVar(&key, "key", "", "standalone: the private key (PEM file)")
	f.StringVar(&accessLog, "access-log", "", "standalone: the access log file (none when empty)")
	f.StringVar(&healthPath, "health-path", "/", "standalone: the health check path")
	f.StringVar(&matcher, "matcher", "200", "standalone: the health check's success codes")
	f.DurationVar(&interval, "interval", time.Second, "standalone: the health check interval")
	f.StringArrayVar(&targets, "target", nil, "standalone: a target as ID,ZONE,HOST:PORT (repeatable); restored healthy")
	f.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on this loopback address (benchmarks)")
	cmd.AddCommand(serve, newLBBackendCmd())
	return cmd
}

// newLBBackendCmd is a minimal HTTP target for benchmarks (scripts/bench-lb):
// every request gets the same body, as a small app instance would answer.
func newLBBackendCmd() *cobra.Command {
	var listen string
	var size int
	cmd := &cobra.Command{
		Use:   "backend",
		Short: "Serve a fixed body over plain HTTP, as a benchmark's target (scripts/bench-lb)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := []byte(strings.Repeat("x", size))
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
				ln.Close()
				return fmt.Errorf("lb backend --listen %s: loopback addresses only", listen)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				_, _ = w.Write(body)
			}), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-cmd.Context().Done(); srv.Close() }()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:18081", "the loopback address to serve")
	cmd.Flags().IntVar(&size, "size", 1024, "the body's size in bytes")
	return cmd
}

// standaloneSpec builds a spec from flags, for a load balancer run outside
// a region (benchmarks): its targets start healthy.
func standaloneSpec(httpsAddr, httpAddr, cert, key, accessLog, healthPath, matcher string, interval time.Duration, targets []string) (lb.ProcessSpec, error) {
	if cert == "" || key == "" {
		return lb.ProcessSpec{}, errors.New("lb serve: give --spec-fd, or --cert and --key")
	}
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		return lb.ProcessSpec{}, fmt.Errorf("lb serve: %w", err)
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		return lb.ProcessSpec{}, fmt.Errorf("lb serve: %w", err)
	}
	m, err := spec.ParseMatcher(matcher)
	if err != nil {
		return lb.ProcessSpec{}, fmt.Errorf("lb serve: --matcher: %w", err)
	}
	cfg := lb.Config{HTTPSAddr: httpsAddr, HTTPAddr: httpAddr, HealthCheck: lb.HealthCheck{Path: healthPath, Interval: interval, Matcher: m}}
	ps := lb.ProcessSpec{Settings: lb.SettingsOf(cfg), CertPEM: certPEM, KeyPEM: keyPEM, AccessLog: accessLog}
	for _, t := range targets {
		parts := strings.Split(t, ",")
		if len(parts) != 3 {
			return lb.ProcessSpec{}, fmt.Errorf("lb serve: --target %q: want ID,ZONE,HOST:PORT", t)
		}
		ps.Targets = append(ps.Targets, lb.TargetStatus{ID: parts[0], Zone: parts[1], Addr: parts[2], State: lb.StateHealthy, Since: time.Now()})
	}
	return ps, nil
}
