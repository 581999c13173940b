// Package metrics exposes the region's tiers as Prometheus metrics read from their published snapshots, serves them on a loopback /metrics listener, and samples them every second for alarms and live charts.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/backup"
	"github.com/haven-platform/haven/internal/cgroup"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
	"github.com/haven-platform/haven/internal/pgha"
	"github.com/haven-platform/haven/internal/secrets"
)

// LBReader is what the metrics read of the load balancer: one snapshot of
// its counters (lb.LB.Metrics). A plain value, so a load balancer running
// in its own process can answer it too.
type LBReader interface {
	Metrics() lb.Metrics
}

// FleetReader is what they read of the fleet (*fleet.Fleet).
type FleetReader interface {
	Capacity() fleet.Capacity
	Instances() []fleet.InstanceStatus
	Activity() []fleet.ActivityCount
}

// CgroupReader reads an instance's CPU and memory counters by its id
// (*cgroup.Manager).
type CgroupReader interface {
	Stats(name string) (cgroup.Stats, error)
}

// DBReader is the database tier's snapshot (*pgha.Cluster).
type DBReader interface {
	Status() pgha.Status
}

// BackupReader is the backup tier's snapshots (*backup.Manager).
type BackupReader interface {
	ArchiveStatus() backup.ArchiveStatus
	Restorable() backup.Restorable
}

// SecretsReader is the secrets tier's counters (*secrets.Server).
type SecretsReader interface {
	Stats() secrets.Stats
}

// AlarmsReader is the alarm engine's snapshot (*alarms.Engine).
type AlarmsReader interface {
	Status() *alarms.Status
}

// Tiers returns the tiers running now; each method returns nil while its
// tier does not run (not started yet, stopped, or off). The region
// implements it over its published view, so a scrape never waits on the
// region or a tier.
type Tiers interface {
	LB() LBReader
	Fleet() FleetReader
	Cgroups() CgroupReader
	DB() DBReader
	Backups() BackupReader
	Secrets() SecretsReader
	Alarms() AlarmsReader
}

// Config configures Metrics. Tiers is required.
type Config struct {
	// Tiers gives the collectors the running tiers. Required.
	Tiers Tiers
	// Region names the region (the region label of haven_build_info).
	Region string
	// Version is haven's version (haven_build_info's version label).
	Version string
	// InstanceCPU is each instance's CPU quota in cores and InstanceMemory
	// its memory limit in bytes (the launch template's), exported as
	// haven_instance_cpu_limit_cores and haven_instance_memory_limit_bytes.
	// Zero: not exported.
	InstanceCPU    float64
	InstanceMemory int64
	// Listen is the loopback address /metrics is served on by Start.
	// Required for Start.
	Listen string
	// Clock tells the time of ages and lags (haven_db_wal_archive_lag_seconds,
	// haven_secrets_current_version_age_seconds). Default clock.Real.
	Clock clock.Clock
	// Logger receives the listener's logs (component "metrics"). Default
	// slog.Default().
	Logger *slog.Logger
}

// Metrics is the region's metrics: the registry of every tier's
// collector, its /metrics listener, and the Sampler that reads the same
// collectors for alarms and charts.
type Metrics struct {
	cfg     Config
	log     *slog.Logger
	tiers   *prometheus.Registry // haven's own families (what the sampler reads)
	runtime *prometheus.Registry // the daemon process's Go and process metrics

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

// New builds the registries. It listens on nothing until Start.
func New(cfg Config) (*Metrics, error) {
	if cfg.Tiers == nil {
		return nil, errors.New("new metrics: tiers: must be set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	m := &Metrics{cfg: cfg, log: cfg.Logger.With("component", "metrics"), tiers: prometheus.NewRegistry(), runtime: prometheus.NewRegistry()}
	if err := m.tiers.Register(newCollector(cfg)); err != nil {
		return nil, fmt.Errorf("new metrics: %w", err)
	}
	if err := m.runtime.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("new metrics: %w", err)
	}
	if err := m.runtime.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("new metrics: %w", err)
	}
	return m, nil
}

// Gatherer gathers haven's own families (every tier's), without the
// runtime's: what the Sampler reads.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.tiers }

// Handler serves every family in the Prometheus text format (or
// OpenMetrics, as the scraper asks), the runtime's included.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{m.tiers, m.runtime}, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Start serves /metrics on cfg.Listen, which must be a loopback address
// (nothing else answers there but 404). It returns once the listener is
// bound.
func (m *Metrics) Start(ctx context.Context) error {
	if err := CheckLoopback("metrics.listen", m.cfg.Listen); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s for /metrics: %w", m.cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelDebug)}
	m.mu.Lock()
	m.srv, m.ln = srv, ln
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics listener stopped", "err", err)
		}
	}()
	m.log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// Addr is the bound address of the listener ("" before Start).
func (m *Metrics) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Stop closes the listener and waits for scrapes in flight, or for ctx.
func (m *Metrics) Stop(ctx context.Context) error {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("stop metrics listener: %w", err)
	}
	return nil
}

// CheckLoopback returns an error naming field unless addr is host:port
// with a loopback IP host (or localhost).
func CheckLoopback(field, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%s: must be a loopback host:port such as 127.0.0.1:9464, got %q", field, addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: %q is not a loopback address: the endpoint is for this machine's operator only; use 127.0.0.1", field, addr)
	}
	return nil
}
