package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/spec"
)

// Algorithm names accepted in Config.Algorithm.
const (
	// RoundRobin gives every healthy target an equal share (weighted by slow start).
	RoundRobin = "round_robin"
	// LeastOutstandingRequests sends each request to the target with the fewest
	// requests in flight (weighted by slow start).
	LeastOutstandingRequests = "least_outstanding_requests"
)

// Defaults applied by Config.withDefaults; each Config field documents its own.
const (
	DefaultName                = "lb"
	DefaultHTTPSAddr           = "127.0.0.1:0"
	DefaultHealthPath          = "/"
	DefaultHealthInterval      = time.Second
	DefaultHealthTimeout       = 500 * time.Millisecond
	DefaultHealthyThreshold    = 2
	DefaultUnhealthyThreshold  = 2
	DefaultDeregistrationDelay = 300 * time.Second
	DefaultIdleTimeout         = 60 * time.Second
	DefaultRetryBudget         = 5 * time.Second
)

// Config configures a load balancer. The zero value of every field except TLS
// selects the documented default.
type Config struct {
	// Name identifies the load balancer in logs. Default "lb".
	Name string
	// HTTPSAddr is the TLS listener address. Default "127.0.0.1:0" (an ephemeral
	// port; read it back with HTTPSURL or HTTPSAddr after Start).
	HTTPSAddr string
	// HTTPAddr, if set, is a plain-HTTP listener that redirects every request to
	// the HTTPS listener with the same host, path and query: 301 for GET and HEAD,
	// 308 for other methods. Default "" (no redirect listener).
	HTTPAddr string
	// TLS is the server TLS configuration; it must carry a certificate
	// (Certificates or GetCertificate). Required.
	TLS *tls.Config
	// HealthCheck configures the active health checks.
	HealthCheck HealthCheck
	// Algorithm is RoundRobin or LeastOutstandingRequests. Default RoundRobin.
	Algorithm string
	// DeregistrationDelay is how long Deregister waits for in-flight requests to
	// finish before cutting them. Default 300s (the ALB default).
	DeregistrationDelay time.Duration
	// SlowStart is the time over which a newly healthy target's share of traffic
	// ramps up linearly. Default 0 (off).
	SlowStart time.Duration
	// IdleTimeout is how long a target may stay silent (no response headers, no
	// body bytes) before the request fails with 504; it is also the idle timeout
	// of client keep-alive connections. Default 60s.
	IdleTimeout time.Duration
	// RetryBudget bounds, from the arrival of a request, the time within which a
	// failed attempt may be retried on another target. Default 5s.
	RetryBudget time.Duration
	// HSTS is the Strict-Transport-Security header the HTTPS listener adds to
	// every response that does not carry one (a target's own is kept), its
	// error responses included. Default DefaultHSTS ("max-age=31536000").
	// The listener always follows SecurityPolicy (TLS 1.2 and 1.3, the
	// cipher suites of PolicyCipherSuites), whatever TLS says.
	HSTS string
	// Dial connects to targets, for requests and health checks alike: in a
	// region's VPC, from the load balancer's own namespace and its address
	// in each zone's public subnet (vpc.Namespace.DialContext). Default: a
	// plain dial from the process's network.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// AccessLog, if set, receives one JSON object per request, one per line.
	// Default nil (no access log).
	AccessLog io.Writer
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
	// Clock drives health-check intervals, deregistration delay, slow start and
	// timestamps. Default: the real clock. Per-request timeouts (IdleTimeout,
	// RetryBudget) use the real clock, since they measure socket activity.
	Clock clock.Clock
}

// HealthCheck configures active health checks: an HTTP GET to
// http://<target addr><Path> every Interval (jittered by ±10%).
type HealthCheck struct {
	// Path is the request path. Default "/".
	Path string
	// Interval between two checks of one target. Default 1s.
	Interval time.Duration
	// Timeout of one check; must be shorter than Interval. Default 500ms, or
	// 80% of Interval if that is shorter.
	Timeout time.Duration
	// HealthyThreshold is the number of consecutive passed checks that make a
	// target healthy. Default 2.
	HealthyThreshold int
	// UnhealthyThreshold is the number of consecutive failed checks that make a
	// target unhealthy. Default 2.
	UnhealthyThreshold int
	// Matcher lists the status codes that pass: "200", "200-399", "200,204".
	// Default "200".
	// Codes must be within 200-499, as on ALB. Default "200".
	Matcher spec.Matcher
}

// withDefaults returns a copy of c with every unset field set to its default.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.HTTPSAddr == "" {
		c.HTTPSAddr = DefaultHTTPSAddr
	}
	if c.HSTS == "" {
		c.HSTS = DefaultHSTS
	}
	if c.HealthCheck.Path == "" {
		c.HealthCheck.Path = DefaultHealthPath
	}
	if c.HealthCheck.Interval == 0 {
		c.HealthCheck.Interval = DefaultHealthInterval
	}
	if c.HealthCheck.Timeout == 0 {
		c.HealthCheck.Timeout = min(DefaultHealthTimeout, c.HealthCheck.Interval*4/5)
	}
	if c.HealthCheck.HealthyThreshold == 0 {
		c.HealthCheck.HealthyThreshold = DefaultHealthyThreshold
	}
	if c.HealthCheck.UnhealthyThreshold == 0 {
		c.HealthCheck.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if c.HealthCheck.Matcher.IsZero() {
		c.HealthCheck.Matcher = spec.MustMatcher("200")
	}
	if c.Algorithm == "" {
		c.Algorithm = RoundRobin
	}
	if c.DeregistrationDelay == 0 {
		c.DeregistrationDelay = DefaultDeregistrationDelay
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	return c
}

// Validate reports every invalid field of c (after defaults are applied), each
// error naming the field and what is allowed.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("load_balancer.%s: "+format, append([]any{field}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.HTTPSAddr); err != nil {
		bad("https", "must be host:port, got %q", c.HTTPSAddr)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("http", "must be host:port or empty, got %q", c.HTTPAddr)
		}
	}
	if c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil) {
		bad("tls", "must carry a server certificate")
	}
	hc := c.HealthCheck
	if hc.Path == "" || hc.Path[0] != '/' {
		bad("health_check.path", "must start with /, got %q", hc.Path)
	}
	if hc.Interval < 0 {
		bad("health_check.interval", "must be > 0, got %s", hc.Interval)
	}
	if hc.Timeout < 0 || hc.Timeout >= hc.Interval {
		bad("health_check.timeout", "must be > 0 and < health_check.interval (%s), got %s", hc.Interval, hc.Timeout)
	}
	if hc.HealthyThreshold < 1 || hc.HealthyThreshold > 10 {
		bad("health_check.healthy", "must be 1-10, got %d", hc.HealthyThreshold)
	}
	if hc.UnhealthyThreshold < 1 || hc.UnhealthyThreshold > 10 {
		bad("health_check.unhealthy", "must be 1-10, got %d", hc.UnhealthyThreshold)
	}
	if c.Algorithm != RoundRobin && c.Algorithm != LeastOutstandingRequests {
		bad("algorithm", "must be %q or %q, got %q", RoundRobin, LeastOutstandingRequests, c.Algorithm)
	}
	if c.DeregistrationDelay < 0 {
		bad("deregistration_delay", "must be >= 0, got %s", c.DeregistrationDelay)
	}
	if c.SlowStart < 0 {
		bad("slow_start", "must be >= 0 (0 = off), got %s", c.SlowStart)
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout", "must be > 0, got %s", c.IdleTimeout)
	}
	if c.RetryBudget < 0 {
		bad("retry_budget", "must be > 0, got %s", c.RetryBudget)
	}
	return errors.Join(errs...)
}

// tg returns the target group settings in force: the Config's, or the last
// SetTargetGroup's.
func (l *LB) tg() *Config { return l.group.Load() }

// SetTargetGroup changes the target group's settings in place, as
// ModifyTargetGroup and ModifyTargetGroupAttributes do on AWS: c's
// HealthCheck, Algorithm, DeregistrationDelay, SlowStart and IdleTimeout;
// every other field of c is ignored. Each health check loop takes the new
// interval after its current wait, each probe the new path, timeout and
// matcher, targets that start draining the new delay, requests that start
// the new idle timeout. No target is re-registered and no connection is
// closed. The listeners keep the idle timeout they started with for their
// keep-alive connections.
func (l *LB) SetTargetGroup(c Config) error {
	next := *l.tg()
	next.HealthCheck, next.Algorithm = c.HealthCheck, c.Algorithm
	next.DeregistrationDelay, next.SlowStart, next.IdleTimeout = c.DeregistrationDelay, c.SlowStart, c.IdleTimeout
	if err := next.Validate(); err != nil {
		return fmt.Errorf("modify target group %s: %w", l.cfg.Name, err)
	}
	next = next.withDefaults()
	l.group.Store(&next)
	l.log.Info("target group modified", "interval", next.HealthCheck.Interval, "timeout", next.HealthCheck.Timeout,
		"deregistration_delay", next.DeregistrationDelay, "algorithm", next.Algorithm)
	return nil
}
