package backup

import (
	"strings"
	"testing"
)

func TestRecoveryHint(t *testing.T) {
	short := "2026-11-25 01:16:29.965 UTC [25208] FATAL:  recovery ended before configured recovery target was reached"
	if h := recoveryHint(short); !strings.Contains(h, "segment is missing") {
		t.Errorf("hint for a recovery short of its target = %q", h)
	}
	if h := recoveryHint("FATAL:  could not open file"); h != "" {
		t.Errorf("hint for another failure = %q, want none", h)
	}
}
