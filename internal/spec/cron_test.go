package spec

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// matches reports whether the minute at is scheduled by c.
func matches(c Cron, t time.Time) bool { return c.DueBetween(t.Add(-time.Minute), t) }

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
		{"0 3 * * 5-7", "2025-01-05 03:00", true},
		{"0 3 * * 5-7", "2025-01-06 03:00", false},
		{"*/15 * * * *", "2025-01-05 10:45", true},
		{"*/15 * * * *", "2025-01-05 10:50", false},
		{"5-10/5 * * * *", "2025-01-05 10:10", true},
		{"5-10/5 * * * *", "2025-01-05 10:07", false},
		{"0 7 * * 1-5", "2025-01-06 07:00", true},  // Monday
		{"0 7 * * 1-5", "2025-01-04 07:00", false}, // Saturday
		{"0 7 * * MON-FRI", "2025-01-06 07:00", true},
		{"0 7 * * mon-fri", "2025-01-04 07:00", false},
		{"0 0 1,15 * *", "2025-01-15 00:00", true},
		{"0 0 1 * 1", "2025-01-06 00:00", true},  // dom and dow restricted: either
		{"0 0 1 * 1", "2025-01-01 00:00", true},  // Wednesday, the 1st
		{"0 0 1 * 1", "2025-01-07 00:00", false}, // Tuesday, the 7th
		{"0 0 * 2 *", "2025-01-01 00:00", false},
		{"0 0 * FEB *", "2025-02-01 00:00", true},
		{"30 2/6 * * *", "2025-01-05 14:30", true},
		{"@daily", "2025-01-05 00:00", true},
		{"@daily", "2025-01-05 03:00", false},
		{"@hourly", "2025-01-05 03:00", true},
		{"@weekly", "2025-01-05 00:00", true},
		{"@monthly", "2025-01-01 00:00", true},
	}
	for _, tt := range tests {
		c, err := ParseCron(tt.expr)
		if err != nil {
			t.Fatalf("ParseCron(%q): %v", tt.expr, err)
		}
		if got := matches(c, at(tt.at)); got != tt.want {
			t.Errorf("%q matches %s = %v, want %v", tt.expr, tt.at, got, tt.want)
		}
	}
}

func TestParseCronErrors(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
		"*/0 * * * *", "a * * * *", "5-1 * * * *", "@every 1h", "@reboot", "CRON_TZ=UTC 0 3 * * *", "TZ=UTC 0 3 * * *"} {
		if _, err := ParseCron(expr); err == nil || !strings.Contains(err.Error(), "cron expression") {
			t.Errorf("ParseCron(%q) err = %v, want an error that says what a cron expression is", expr, err)
		}
	}
}

func TestCronInTimeZone(t *testing.T) {
	dublin, err := time.LoadLocation("Europe/Dublin")
	if err != nil {
		t.Fatal(err)
	}
	c := MustCron("0 7 * * MON-FRI").In(dublin)
	// 2025-07-07 is a Monday; Dublin is UTC+1 in summer.
	from := time.Date(2025, 7, 7, 0, 0, 0, 0, time.UTC)
	if got, want := c.Next(from), time.Date(2025, 7, 7, 6, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Next = %v, want %v (07:00 in Dublin)", got.UTC(), want)
	}
	if c.Location() != dublin || MustCron("@daily").Location() != time.UTC {
		t.Errorf("locations: %v and %v, want Europe/Dublin and UTC", c.Location(), MustCron("@daily").Location())
	}
	var zero Cron
	if !zero.IsZero() || zero.DueBetween(from, from.Add(24*time.Hour)) {
		t.Error("the zero Cron fires")
	}
}

func TestCronFieldsAndSpec(t *testing.T) {
	for expr, want := range map[string]string{"@daily": "0 0 * * *", "0  7 * * MON-FRI": "0 7 * * MON-FRI", "@hourly": "0 * * * *"} {
		if got := MustCron(expr).Fields(); got != want {
			t.Errorf("Fields(%q) = %q, want %q", expr, got, want)
		}
	}
	s, err := Parse([]byte("fleet:\n  scaling:\n    - {scheduled: morning, cron: \"0 7 * * MON-FRI\", time_zone: Europe/Dublin, min: 4}\n"+
		"database: {backup_schedule: \"@daily\"}\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Fleet.Scaling[0]
	if p.Cron.String() != "0 7 * * MON-FRI" || p.Cron.Location().String() != "Europe/Dublin" {
		t.Errorf("scheduled cron = %q in %v, want 0 7 * * MON-FRI in Europe/Dublin", p.Cron, p.Cron.Location())
	}
	if s.Database.BackupSchedule.String() != "@daily" || s.Database.BackupSchedule.Location() != time.UTC {
		t.Errorf("backup schedule = %q in %v", s.Database.BackupSchedule, s.Database.BackupSchedule.Location())
	}
}
