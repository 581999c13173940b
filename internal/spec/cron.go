package spec

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// Cron is a schedule in five-field cron syntax (minute hour day-of-month
// month day-of-week), parsed once by the spec with robfig/cron: *, lists,
// ranges, steps, month and weekday names ("0 7 * * MON-FRI"), and the
// descriptors @yearly, @monthly, @weekly, @daily and @hourly. Day-of-week 7
// is Sunday, as 0 is. When both day fields are restricted, a time matches
// when either does (Vixie cron). It is evaluated in its location: UTC
// unless the spec names a time zone. The zero Cron never fires.
type Cron struct {
	expr  string
	sched *cron.SpecSchedule
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cronDescriptors are the descriptors accepted, with the five fields each stands for.
var cronDescriptors = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

// ParseCron parses a cron expression, evaluated in UTC.
func ParseCron(expr string) (Cron, error) {
	e := strings.Join(strings.Fields(expr), " ")
	bad := func(why string) (Cron, error) {
		return Cron{}, fmt.Errorf(`must be a five-field cron expression (minute hour day-of-month month day-of-week) such as "0 7 * * MON-FRI", or @daily: %s, got %q`, why, expr)
	}
	switch {
	case e == "":
		return bad("it is empty")
	case strings.HasPrefix(e, "TZ=") || strings.HasPrefix(e, "CRON_TZ="):
		return bad("give the zone in time_zone, not in the expression")
	case strings.HasPrefix(e, "@") && cronDescriptors[strings.ToLower(e)] == "":
		return bad("the descriptors are @yearly, @monthly, @weekly, @daily and @hourly")
	}
	fields := e
	if d := cronDescriptors[strings.ToLower(e)]; d != "" {
		fields = d
	} else if f := strings.Fields(e); len(f) == 5 {
		f[4] = sundaySeven(f[4])
		fields = strings.Join(f, " ")
	}
	s, err := cronParser.Parse(fields)
	if err != nil {
		return bad(err.Error())
	}
	ss := s.(*cron.SpecSchedule) // five fields or a calendar descriptor: always a SpecSchedule
	ss.Location = time.UTC
	return Cron{expr: e, sched: ss}, nil
}

// sundaySeven rewrites day-of-week 7 (Sunday, as in Vixie cron) to 0, which
// robfig/cron accepts: "7" alone, or as the end of a range without a step.
func sundaySeven(dow string) string {
	parts := strings.Split(dow, ",")
	for i, p := range parts {
		switch lo, hi, isRange := strings.Cut(p, "-"); {
		case p == "7":
			parts[i] = "0"
		case isRange && hi == "7" && lo != "7":
			parts[i] = lo + "-6,0"
		}
	}
	return strings.Join(parts, ",")
}

// MustCron is ParseCron for literals known to be valid; it panics otherwise.
func MustCron(expr string) Cron {
	c, err := ParseCron(expr)
	if err != nil {
		panic(err)
	}
	return c
}

// In returns the schedule evaluated in loc.
func (c Cron) In(loc *time.Location) Cron {
	if c.sched == nil || loc == nil {
		return c
	}
	s := *c.sched
	s.Location = loc
	c.sched = &s
	return c
}

// Location is the time zone the schedule is evaluated in.
func (c Cron) Location() *time.Location {
	if c.sched == nil {
		return time.UTC
	}
	return c.sched.Location
}

// IsZero reports whether c is the zero Cron (nothing parsed).
func (c Cron) IsZero() bool { return c.sched == nil }

// Next returns the first scheduled minute after t (zero for the zero Cron).
func (c Cron) Next(t time.Time) time.Time {
	if c.sched == nil {
		return time.Time{}
	}
	return c.sched.Next(t)
}

// DueBetween reports whether a scheduled minute falls in (from, to].
func (c Cron) DueBetween(from, to time.Time) bool {
	n := c.Next(from)
	return !n.IsZero() && !n.After(to)
}

// String is the expression as written (spaces normalised).
func (c Cron) String() string { return c.expr }

// Fields is the expression as five fields, a descriptor spelled out
// ("@daily" → "0 0 * * *"): what Unix cron and AWS scheduled actions take.
func (c Cron) Fields() string {
	if d := cronDescriptors[strings.ToLower(c.expr)]; d != "" {
		return d
	}
	return c.expr
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Cron) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf(`expected a cron expression such as "0 3 * * *", got a %s`, kindName(n.Kind))
	}
	v, err := ParseCron(n.Value)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (c Cron) MarshalYAML() (any, error) { return c.expr, nil }

// MarshalJSON writes the expression.
func (c Cron) MarshalJSON() ([]byte, error) { return json.Marshal(c.expr) }

// UnmarshalJSON reads an expression (in UTC).
func (c *Cron) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseCron(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}
