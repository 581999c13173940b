package drill

import (
	"errors"
	"testing"
	"time"
)

func TestRecorderSummary(t *testing.T) {
	r := NewRecorder()
	for i := 1; i <= 100; i++ {
		var err error
		if i%50 == 0 {
			err = errors.New("status 502")
		}
		r.Record("/courses", time.Duration(i)*time.Millisecond, err)
	}
	s := r.Summary()
	if s.Requests != 100 || s.Failed != 2 {
		t.Fatalf("requests=%d failed=%d, want 100 and 2", s.Requests, s.Failed)
	}
	if s.P50MS != 50 || s.P99MS != 99 || s.MaxMS != 100 {
		t.Errorf("p50=%v p99=%v max=%v, want 50, 99, 100", s.P50MS, s.P99MS, s.MaxMS)
	}
	if s.Errors["status 502"] != 2 || len(s.Failures) != 2 {
		t.Errorf("errors=%v failures=%d", s.Errors, len(s.Failures))
	}
}

func TestQuantileSmall(t *testing.T) {
	one := []time.Duration{7 * time.Millisecond}
	if got := quantile(one, 0.99); got != 7*time.Millisecond {
		t.Errorf("quantile of one = %v", got)
	}
}
