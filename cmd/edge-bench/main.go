// Command edge-bench runs haven's edge alone in front of one origin, caching everything, for scripts/bench-edge.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served on -pprof only
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/edge"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "edge-bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("edge-bench", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:18444", "HTTPS listen address")
	origin := fs.String("origin", "http://127.0.0.1:18080", "origin base URL")
	cert := fs.String("cert", "", "PEM certificate file (required)")
	key := fs.String("key", "", "PEM key file (required)")
	pprofAddr := fs.String("pprof", "", "loopback address for net/http/pprof; empty: off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return errors.New("-cert and -key are required")
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := edge.New(edge.Config{
		Addr:            *listen,
		TLS:             &tls.Config{Certificates: []tls.Certificate{pair}},
		Origins:         []edge.Origin{{ID: "origin", URL: *origin}},
		DefaultBehavior: edge.Behavior{Target: "origin", CachePolicy: edge.CachingOptimized(), Compress: true},
		Logger:          log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := e.Start(ctx); err != nil {
		return err
	}
	if *pprofAddr != "" {
		if host, _, err := net.SplitHostPort(*pprofAddr); err != nil || !net.ParseIP(host).IsLoopback() {
			return fmt.Errorf("-pprof must be a loopback host:port, got %q", *pprofAddr)
		}
		srv := &http.Server{Addr: *pprofAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.ListenAndServe() }()
		defer srv.Close()
	}
	fmt.Println("edge-bench: serving", e.URL(), "in front of", *origin)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := e.Stats()
	fmt.Printf("edge-bench: requests %d hits %d misses %d hit ratio %.4f\n", s.Requests, s.Hits, s.Misses, s.HitRatio)
	return e.Stop(sctx)
}
