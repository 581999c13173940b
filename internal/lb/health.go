package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// State is a target's health state, named as on ALB.
type State string

// Target states.
const (
	// StateInitial: registered, health checks not yet passed; gets no traffic.
	StateInitial State = "initial"
	// StateHealthy: passed HealthyThreshold consecutive checks; gets traffic.
	StateHealthy State = "healthy"
	// StateUnhealthy: failed UnhealthyThreshold consecutive checks, or was
	// ejected after a connection error; gets traffic only when the LB fails open.
	StateUnhealthy State = "unhealthy"
	// StateDraining: deregistration in progress; gets no new traffic.
	StateDraining State = "draining"
)

// Reason codes, as ALB reports them in DescribeTargetHealth.
const (
	ReasonInitialHealthChecking   = "Elb.InitialHealthChecking"
	ReasonResponseCodeMismatch    = "Target.ResponseCodeMismatch"
	ReasonTimeout                 = "Target.Timeout"
	ReasonFailedHealthChecks      = "Target.FailedHealthChecks"
	ReasonConnectionError         = "Target.ConnectionError" // passive ejection (haven-specific)
	ReasonDeregistrationInProcess = "Target.DeregistrationInProgress"
)

// healthCounters is the health-check state of one target, as used by nextHealth.
type healthCounters struct {
	State State
	OK    int // consecutive passed checks
	Fail  int // consecutive failed checks
}

// nextHealth applies one check result to h and returns the new counters. A pass
// moves an initial or unhealthy target to healthy after healthy consecutive
// passes; a failure moves an initial or healthy target to unhealthy after
// unhealthy consecutive failures. Draining targets do not change.
func nextHealth(h healthCounters, passed bool, healthy, unhealthy int) healthCounters {
	if h.State == StateDraining {
		return h
	}
	if passed {
		h.OK++
		h.Fail = 0
		if h.State != StateHealthy && h.OK >= healthy {
			h.State = StateHealthy
		}
		return h
	}
	h.Fail++
	h.OK = 0
	if h.State != StateUnhealthy && h.Fail >= unhealthy {
		h.State = StateUnhealthy
	}
	return h
}

// matcher reports whether a health-check status code passes.
type matcher func(code int) bool

// parseMatcher parses an ALB success-code matcher: comma-separated codes and
// inclusive ranges ("200", "200-399", "200,204,300-302"), all within 200-499.
func parseMatcher(s string) (matcher, error) {
	type span struct{ lo, hi int }
	var spans []span
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("must be codes or ranges like \"200\" or \"200-399\", got %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("must be codes or ranges like \"200\" or \"200-399\", got %q", s)
			}
		}
		if a < 200 || b > 499 || a > b {
			return nil, fmt.Errorf("codes must be within 200-499 and ranges ascending, got %q", s)
		}
		spans = append(spans, span{a, b})
	}
	return func(code int) bool {
		for _, sp := range spans {
			if code >= sp.lo && code <= sp.hi {
				return true
			}
		}
		return false
	}, nil
}

// probe runs one health check against t and returns whether it passed and, if
// not, the ALB reason code.
func (l *LB) probe(ctx context.Context, t *target) (bool, string) {
	hc := l.cfg.HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+hc.Path, nil)
	if err != nil {
		return false, ReasonFailedHealthChecks
	}
	req.Header.Set("User-Agent", "haven-lb-healthchecker/1.0")
	resp, err := l.checkClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return false, ReasonTimeout
		}
		return false, ReasonFailedHealthChecks
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !l.match(resp.StatusCode) {
		return false, ReasonResponseCodeMismatch
	}
	return true, ""
}

// healthLoop checks t once per interval until ctx ends: checks start on a
// fixed cadence (a slow or timed-out check does not push the next one back),
// so a hung target is marked unhealthy within unhealthy × interval + timeout.
// The first check runs after a short random delay so that targets registered
// together spread out.
func (l *LB) healthLoop(ctx context.Context, t *target) {
	defer l.wg.Done()
	interval := l.cfg.HealthCheck.Interval
	wait := time.Duration(rand.Int64N(int64(interval)/10 + 1))
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.clock.After(wait):
		}
		start := l.clock.Now()
		passed, reason := l.probe(ctx, t)
		if ctx.Err() != nil {
			return
		}
		l.applyCheck(t, passed, reason)
		wait = max(interval-l.clock.Now().Sub(start), 0)
	}
}
