package backup

import (
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/spec"
)

func mustTime(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDue(t *testing.T) {
	full := spec.MustCron("0 3 * * 0")
	sun3 := mustTime("2025-01-05 03:00")
	tests := []struct {
		name                           string
		now, lastCheck, lastFull, last time.Time
		incr                           time.Duration
		want                           Kind
	}{
		{"no backup yet", sun3.Add(5 * time.Hour), time.Time{}, time.Time{}, time.Time{}, time.Hour, Full},
		{"cron minute", sun3.Add(20 * time.Second), sun3.Add(-40 * time.Second), sun3.Add(-7 * 24 * time.Hour), sun3.Add(-10 * time.Minute), time.Hour, Full},
		{"cron minute passed while busy", sun3.Add(30 * time.Minute), sun3.Add(-5 * time.Minute), sun3.Add(-7 * 24 * time.Hour), sun3.Add(-10 * time.Minute), time.Hour, Full},
		{"full already taken this minute", sun3.Add(50 * time.Second), sun3.Add(-10 * time.Second), sun3.Add(40 * time.Second), sun3.Add(40 * time.Second), time.Hour, ""},
		{"incremental due", sun3.Add(2 * time.Hour), sun3.Add(2*time.Hour - time.Minute), sun3, sun3.Add(time.Hour), time.Hour, Incremental},
		{"incremental not yet", sun3.Add(2 * time.Hour), sun3.Add(2*time.Hour - time.Minute), sun3, sun3.Add(90 * time.Minute), time.Hour, ""},
		{"incrementals disabled", sun3.Add(5 * time.Hour), sun3.Add(5*time.Hour - time.Minute), sun3, sun3, -1, ""},
		{"first check after start, off the cron", sun3.Add(5 * time.Hour), time.Time{}, sun3, sun3.Add(4*time.Hour + 30*time.Minute), time.Hour, ""},
	}
	for _, tt := range tests {
		if got := Due(tt.now, tt.lastCheck, tt.lastFull, tt.last, full, tt.incr); got != tt.want {
			t.Errorf("%s: Due = %q, want %q", tt.name, got, tt.want)
		}
	}
}
