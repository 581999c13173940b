package backup

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed 5-field cron expression: minute hour day-of-month month
// day-of-week. Each field takes *, numbers, ranges (a-b), lists (a,b) and
// steps (*/n, a-b/n); day-of-week 0 and 7 are Sunday. As in Vixie cron, when
// both day fields are restricted a time matches when either matches.
type Cron struct {
	minute, hour, dom, month, dow uint64 // bit sets
	domStar, dowStar              bool
}

// ParseCron parses a 5-field cron expression.
func ParseCron(expr string) (Cron, error) {
	f := strings.Fields(expr)
	if len(f) != 5 {
		return Cron{}, fmt.Errorf("cron %q: want 5 fields (minute hour day-of-month month day-of-week), got %d", expr, len(f))
	}
	var c Cron
	var err error
	specs := []struct {
		dst      *uint64
		min, max int
		name     string
	}{{&c.minute, 0, 59, "minute"}, {&c.hour, 0, 23, "hour"}, {&c.dom, 1, 31, "day-of-month"}, {&c.month, 1, 12, "month"}, {&c.dow, 0, 7, "day-of-week"}}
	for i, s := range specs {
		if *s.dst, err = parseField(f[i], s.min, s.max); err != nil {
			return Cron{}, fmt.Errorf("cron %q: %s: %w", expr, s.name, err)
		}
	}
	if c.dow&(1<<7) != 0 {
		c.dow |= 1
	}
	c.domStar, c.dowStar = f[2] == "*" || strings.HasPrefix(f[2], "*/"), f[4] == "*" || strings.HasPrefix(f[4], "*/")
	return c, nil
}

func parseField(s string, min, max int) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(s, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("bad step %q", stepStr)
			}
			step = n
		}
		lo, hi := min, max
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err1, err2 error
			lo, err1 = strconv.Atoi(a)
			hi, err2 = strconv.Atoi(b)
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("bad range %q", rng)
			}
		default:
			n, err := strconv.Atoi(rng)
			if err != nil {
				return 0, fmt.Errorf("bad value %q", rng)
			}
			lo, hi = n, n
			if hasStep {
				hi = max
			}
		}
		if lo < min || hi > max || lo > hi {
			return 0, fmt.Errorf("%q out of range %d-%d", rng, min, max)
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

// Matches reports whether the minute containing t (in t's location) matches.
func (c Cron) Matches(t time.Time) bool {
	if c.minute&(1<<uint(t.Minute())) == 0 || c.hour&(1<<uint(t.Hour())) == 0 || c.month&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// DueBetween reports whether a minute in (from, to] matches, looking at
// most 8 days back from to.
func (c Cron) DueBetween(from, to time.Time) bool {
	if lim := to.Add(-8 * 24 * time.Hour); from.Before(lim) {
		from = lim
	}
	t := from.Truncate(time.Minute).Add(time.Minute)
	for ; !t.After(to); t = t.Add(time.Minute) {
		if c.Matches(t) {
			return true
		}
	}
	return false
}
