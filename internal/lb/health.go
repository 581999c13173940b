package lb

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
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

// probe runs one health check against t and returns whether it passed and, if
// not, the ALB reason code.
func (l *LB) probe(ctx context.Context, t *target) (bool, string) {
	hc := l.tg().HealthCheck
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
	if !hc.Matcher.Match(resp.StatusCode) {
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
	wait := time.Duration(rand.Int64N(int64(l.tg().HealthCheck.Interval)/10 + 1))
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
		wait = max(l.tg().HealthCheck.Interval-l.clock.Now().Sub(start), 0) // SetTargetGroup may change it
	}
}
