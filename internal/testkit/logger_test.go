package testkit

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what is logged through it.
type recorder struct {
	testing.TB
	lines    []string
	cleanups []func()
}

func (r *recorder) Log(args ...any) {
	for _, a := range args {
		r.lines = append(r.lines, a.(string))
	}
}
func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func TestLoggerWritesThroughTLogUntilTheTestEnds(t *testing.T) {
	r := &recorder{TB: t}
	log := Logger(r).With("component", "x")
	log.Debug("probe", "n", 1)
	if len(r.lines) != 1 || !strings.Contains(r.lines[0], "msg=probe") || !strings.Contains(r.lines[0], "component=x") || strings.HasSuffix(r.lines[0], "\n") {
		t.Fatalf("logged %q, want one line with msg=probe component=x and no trailing newline", r.lines)
	}
	for _, f := range r.cleanups {
		f()
	}
	log.Info("after the end")
	if len(r.lines) != 1 {
		t.Fatalf("a record after the test ended reached t.Log: %q", r.lines)
	}
}
