package main

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-05-01T09:30:00Z", time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC), true},
		{"2026-05-01T09:30:00.123456+02:00", time.Date(2026, 5, 1, 7, 30, 0, 123456000, time.UTC), true},
		{"2026-05-01 09:30:00", time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC), true},
		{"2026-05-01 09:30:00.5", time.Date(2026, 5, 1, 9, 30, 0, 500000000, time.UTC), true},
		{"-2m", now.Add(-2 * time.Minute), true},
		{"yesterday", time.Time{}, false},
		{"5m", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseTime(tt.in, now)
		if (err == nil) != tt.ok {
			t.Errorf("parseTime(%q) err = %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
