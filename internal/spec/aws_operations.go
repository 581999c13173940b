package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// The AWS settings that keep the database safe to operate: when RDS may do
// maintenance, and how long logs are kept. The local region does not act on
// them; `haven aws tfvars` exports them.

const (
	minuteOfDay  = 24 * 60
	minuteOfWeek = 7 * minuteOfDay
	// MaxLogRetention is the longest log retention: ten years, which
	// `haven aws tfvars` rounds up to CloudWatch Logs' 3653 days.
	MaxLogRetention = 3650 * 24 * time.Hour
)

var (
	maintenanceRE = regexp.MustCompile(`^(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):([0-5]\d)-(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):([0-5]\d)$`)
	dailyRE       = regexp.MustCompile(`^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$`)
	weekdays      = map[string]int{"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
)

// ParseMaintenanceWindow parses an RDS maintenance window such as
// "sun:04:00-sun:05:00" (UTC) into its start and end in minutes since Monday
// 00:00, and checks that it lasts at least 30 minutes and at most 24 hours,
// as RDS requires. The window may wrap from Sunday into Monday.
func ParseMaintenanceWindow(w string) (start, end int, err error) {
	m := maintenanceRE.FindStringSubmatch(w)
	if m == nil {
		return 0, 0, fmt.Errorf("must be ddd:hh:mm-ddd:hh:mm in UTC with ddd one of mon…sun, e.g. sun:04:00-sun:05:00, got %q", w)
	}
	at := func(day, hh, mm string) int {
		h, _ := strconv.Atoi(hh)
		mi, _ := strconv.Atoi(mm)
		return weekdays[day]*minuteOfDay + h*60 + mi
	}
	start, end = at(m[1], m[2], m[3]), at(m[4], m[5], m[6])
	if n := (end - start + minuteOfWeek) % minuteOfWeek; n < 30 || n > minuteOfDay {
		return 0, 0, fmt.Errorf("must last from 30 minutes to 24 hours, got %q (%d minutes)", w, n)
	}
	return start, end, nil
}

// parseDailyWindow parses "hh:mm-hh:mm" into minutes since midnight.
func parseDailyWindow(w string) (start, end int, ok bool) {
	m := dailyRE.FindStringSubmatch(w)
	if m == nil {
		return 0, 0, false
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return n(1)*60 + n(2), n(3)*60 + n(4), true
}

// MaintenanceOverlapsBackup reports whether the weekly maintenance window
// shares a minute with the daily backup window ("hh:mm-hh:mm"), which RDS
// refuses. Both are UTC and may wrap (midnight, Sunday to Monday).
func MaintenanceOverlapsBackup(maintenance, backup string) bool {
	ms, me, err := ParseMaintenanceWindow(maintenance)
	if err != nil {
		return false
	}
	bs, be, ok := parseDailyWindow(backup)
	if !ok {
		return false
	}
	in := func(x, from, to, period int) bool { // x in [from, to) on a circle of period minutes
		return (x-from+period)%period < (to-from+period)%period
	}
	for d := 0; d < 7; d++ {
		for x := bs; x != be; x = (x + 1) % minuteOfDay {
			if in(d*minuteOfDay+x, ms, me, minuteOfWeek) {
				return true
			}
		}
	}
	return false
}

// validateAWSOperations checks aws.maintenance_window and aws.log_retention.
func (s *Spec) validateAWSOperations() []Problem {
	var ps []Problem
	add := func(field, format string, a ...any) {
		ps = append(ps, Problem{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	a := &s.AWS
	if _, _, err := ParseMaintenanceWindow(a.MaintenanceWindow); err != nil {
		add("aws.maintenance_window", "%v", err)
	} else if MaintenanceOverlapsBackup(a.MaintenanceWindow, a.BackupWindow) {
		add("aws.maintenance_window", "must not overlap aws.backup_window (%s every day, UTC), got %q; RDS refuses overlapping windows", a.BackupWindow, a.MaintenanceWindow)
	}
	if r := a.LogRetention.D(); r < 24*time.Hour || r > MaxLogRetention {
		add("aws.log_retention", "must be from 1d to 3650d, got %s", a.LogRetention)
	}
	return ps
}
