package region

import (
	"context"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/clock"
)

// TestAlarmStatesFeedTheDeployGate: the release controller's rollback_on
// gate reads the region's alarm engine by name (release.Config.Alarms);
// before the engine runs no alarm counts as in ALARM.
func TestAlarmStatesFeedTheDeployGate(t *testing.T) {
	r := &Region{}
	if got := r.alarmStates(); len(got) != 0 {
		t.Fatalf("before the alarm step: %v, want none", got)
	}
	t0 := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	store := alarms.NewStore(0, 0)
	defs, err := alarms.DefaultDefinitions(alarms.Params{FleetMin: 2})
	if err != nil {
		t.Fatal(err)
	}
	e, err := alarms.New(alarms.Config{Region: "dev", Definitions: defs, Source: store, StateDir: t.TempDir(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	// A failover in the minute 07:00: db-failover is in ALARM at 07:01.
	if err := store.Put(alarms.MetricDatabaseFailovers, alarms.Sample{Time: t0.Add(20 * time.Second), Value: 1}); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(time.Minute + time.Second))
	e.Tick(context.Background())
	r.pub.Store(&tiers{alarms: e})
	got := r.alarmStates()
	if len(got) != len(defs) {
		t.Errorf("states of %d alarms, want all %d: %v", len(got), len(defs), got)
	}
	if got[alarms.AlarmDBFailover] != "ALARM" {
		t.Errorf("%s = %q, want ALARM: %v", alarms.AlarmDBFailover, got[alarms.AlarmDBFailover], got)
	}
	for _, a := range e.Status().Alarms {
		if got[a.Definition.Name] != string(a.State) {
			t.Errorf("%s = %q, the engine says %s", a.Definition.Name, got[a.Definition.Name], a.State)
		}
	}
}
