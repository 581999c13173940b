package backup

import (
	"strings"
	"testing"
	"time"
)

func mustTime(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCronMatches(t *testing.T) {
	// 2025-01-05 is a Sunday.
	tests := []struct {
		expr, at string
		want     bool
	}{
		{"* * * * *", "2025-01-05 13:37", true},
		{"0 3 * * 0", "2025-01-05 03:00", true},
		{"0 3 * * 0", "2025-01-05 03:01", false},
		{"0 3 * * 0", "2025-01-06 03:00", false},
		{"0 3 * * 7", "2025-01-05 03:00", true}, // 7 is Sunday too
		{"*/15 * * * *", "2025-01-05 10:45", true},
		{"*/15 * * * *", "2025-01-05 10:50", false},
		{"5-10/5 * * * *", "2025-01-05 10:10", true},
		{"5-10/5 * * * *", "2025-01-05 10:07", false},
		{"0 7 * * 1-5", "2025-01-06 07:00", true},  // Monday
		{"0 7 * * 1-5", "2025-01-04 07:00", false}, // Saturday
		{"0 0 1,15 * *", "2025-01-15 00:00", true},
		{"0 0 1 * 1", "2025-01-06 00:00", true},  // dom and dow restricted: either
		{"0 0 1 * 1", "2025-01-01 00:00", true},  // Wednesday, the 1st
		{"0 0 1 * 1", "2025-01-07 00:00", false}, // Tuesday, the 7th
		{"0 0 * 2 *", "2025-01-01 00:00", false},
		{"30 2/6 * * *", "2025-01-05 14:30", true},
	}
	for _, tt := range tests {
		c, err := ParseCron(tt.expr)
		if err != nil {
			t.Fatalf("ParseCron(%q): %v", tt.expr, err)
		}
		if got := c.Matches(mustTime(tt.at)); got != tt.want {
			t.Errorf("%q matches %s = %v, want %v", tt.expr, tt.at, got, tt.want)
		}
	}
}

func TestParseCronErrors(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "a * * * *", "5-1 * * * *"} {
		if _, err := ParseCron(expr); err == nil || !strings.Contains(err.Error(), "cron") {
			t.Errorf("ParseCron(%q) err = %v, want an error", expr, err)
		}
	}
}

func TestDue(t *testing.T) {
	full, _ := ParseCron("0 3 * * 0")
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
