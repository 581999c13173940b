package spec

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMaintenanceWindow(t *testing.T) {
	tests := []struct {
		in         string
		start, end int
		err        string
	}{
		{"sun:04:00-sun:05:00", 6*1440 + 240, 6*1440 + 300, ""},
		{"mon:00:00-mon:00:30", 0, 30, ""},
		{"sun:23:45-mon:00:15", 6*1440 + 1425, 15, ""}, // wraps into Monday
		{"sat:22:00-sun:22:00", 5*1440 + 1320, 6*1440 + 1320, ""},
		{"sun:04:00-sun:04:20", 0, 0, "30 minutes"},
		{"mon:00:00-wed:00:00", 0, 0, "24 hours"},
		{"Sun:04:00-Sun:05:00", 0, 0, "ddd:hh:mm"},
		{"04:00-05:00", 0, 0, "ddd:hh:mm"},
		{"sun:24:00-mon:01:00", 0, 0, "ddd:hh:mm"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, e, err := ParseMaintenanceWindow(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || s != tt.start || e != tt.end {
				t.Errorf("= %d, %d, %v; want %d, %d", s, e, err, tt.start, tt.end)
			}
		})
	}
}

func TestMaintenanceOverlapsBackup(t *testing.T) {
	tests := []struct {
		maintenance, backup string
		want                bool
	}{
		{"sun:04:00-sun:05:00", "03:00-04:00", false}, // adjacent: the defaults
		{"sun:03:30-sun:04:30", "03:00-04:00", true},
		{"wed:03:59-wed:04:30", "03:00-04:00", true},
		{"sun:23:50-mon:00:30", "00:00-00:30", true},  // maintenance wraps the week
		{"tue:01:00-tue:02:00", "23:30-01:30", true},  // backup wraps midnight
		{"tue:02:00-tue:03:00", "23:30-01:30", false}, // after the wrapped backup
	}
	for _, tt := range tests {
		if got := MaintenanceOverlapsBackup(tt.maintenance, tt.backup); got != tt.want {
			t.Errorf("MaintenanceOverlapsBackup(%q, %q) = %v, want %v", tt.maintenance, tt.backup, got, tt.want)
		}
	}
}

func TestAWSOperationsFieldsNameTheField(t *testing.T) {
	tests := []struct {
		name, in, field, line, msg string
	}{
		{"window format", "aws:\n  maintenance_window: sunday 4am\n", "aws.maintenance_window", ":2:", "ddd:hh:mm-ddd:hh:mm"},
		{"window short", "aws: {maintenance_window: \"sun:04:00-sun:04:10\"}\n", "aws.maintenance_window", ":1:", "30 minutes"},
		{"window overlaps backup", "aws:\n  backup_window: \"03:00-04:00\"\n  maintenance_window: \"sun:03:30-sun:04:30\"\n", "aws.maintenance_window", ":3:", "overlap aws.backup_window"},
		{"retention zero", "aws: {log_retention: 0s}\n", "aws.log_retention", ":1:", "1d to 3650d"},
		{"retention too long", "aws: {log_retention: 87700h}\n", "aws.log_retention", ":1:", "1d to 3650d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "h.yaml")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *spec.Error", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.msg) || !strings.Contains(msg, "h.yaml"+tt.line) {
				t.Errorf("error %q does not contain field %q, line %q and %q", msg, tt.field, tt.line, tt.msg)
			}
		})
	}
}

func TestAWSOperationsDefaults(t *testing.T) {
	s, err := Parse([]byte("aws: {region: us-east-1}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.AWS.MaintenanceWindow != "sun:04:00-sun:05:00" || s.AWS.LogRetention.String() != "90d" {
		t.Errorf("defaults: maintenance_window %q, log_retention %s", s.AWS.MaintenanceWindow, s.AWS.LogRetention)
	}
	s.AWS.MaintenanceWindow = "sun:23:45-mon:00:15"
	s.AWS.LogRetention = Duration(MaxLogRetention)
	if ps := s.validateAWSOperations(); len(ps) != 0 {
		t.Errorf("valid settings refused: %v", ps)
	}
}
