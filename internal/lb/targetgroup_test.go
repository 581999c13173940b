package lb

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

// TestSetTargetGroupInPlace changes the health check of a running target
// group: a target failing the old path's matcher becomes healthy under the
// new one without being re-registered, and an invalid change is refused
// with the old settings kept.
func TestSetTargetGroupInPlace(t *testing.T) {
	l, _ := startLB(t, nil)
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			w.WriteHeader(http.StatusNoContent)
		}
	})
	cfg := *l.tg()
	cfg.HealthCheck.Path = "/ready"
	if err := l.SetTargetGroup(cfg); err != nil {
		t.Fatal(err)
	}
	register(t, l, "a", "za", b.addr())
	time.Sleep(3 * cfg.HealthCheck.Interval)
	if st, _ := l.TargetHealth("a"); st == StateHealthy {
		t.Fatalf("target healthy on a 204 with matcher 200")
	}
	cfg.HealthCheck.Matcher = spec.MustMatcher("200-299")
	cfg.DeregistrationDelay = 7 * time.Second
	if err := l.SetTargetGroup(cfg); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, "a", StateHealthy)
	if got := l.tg().DeregistrationDelay; got != 7*time.Second {
		t.Errorf("deregistration delay %s, want 7s", got)
	}
	bad := cfg
	bad.HealthCheck.Timeout = 2 * bad.HealthCheck.Interval
	if err := l.SetTargetGroup(bad); err == nil || !strings.Contains(err.Error(), "health_check.timeout") {
		t.Errorf("a timeout above the interval: err %v, want one naming health_check.timeout", err)
	}
	if l.tg().HealthCheck.Timeout != cfg.HealthCheck.Timeout {
		t.Error("a refused change replaced the settings")
	}
}
