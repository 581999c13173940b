package fleet

import (
	"context"
	"testing"
	"time"
)

// TestRollReplacesEveryInstanceLaunchBeforeTerminate changes the launch
// template of a running fleet and rolls it: every instance is replaced by
// one that runs the new template, in-service capacity never drops below
// desired, the zones stay balanced and desired and max end as they were.
func TestRollReplacesEveryInstanceLaunchBeforeTerminate(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Max = 2 // the roll must lift max by one for its surge, then put it back
	f := startFleet(t, cfg)
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	old := f.Instances()

	tpl := cfg.Template
	tpl.Env = map[string]string{"HAVEN_FLEET_TEST_APP": "1", "EXTRA": "y"}
	ver, err := f.SetLaunchTemplate(tpl)
	if err != nil || ver != 2 {
		t.Fatalf("SetLaunchTemplate = %d, %v; want version 2", ver, err)
	}
	bad := tpl
	bad.Command = nil
	if _, err := f.SetLaunchTemplate(bad); err == nil {
		t.Fatal("a template without a command was accepted")
	}

	minInService := 99
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			minInService = min(minInService, len(inService(f)))
		}
	}()
	var replaced []string
	err = f.Roll(context.Background(), 10*time.Second, func(o, n string) { replaced = append(replaced, o) })
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if len(replaced) != 2 {
		t.Errorf("replaced %v, want both of %s, %s", replaced, old[0].ID, old[1].ID)
	}
	if minInService < 2 {
		t.Errorf("in-service instances dropped to %d during the roll, want never below 2", minInService)
	}
	waitFor(t, "2 in service, 1/1", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	for _, s := range f.Instances() {
		if s.TemplateVersion != 2 || getInfo(t, s)["extra"] != "y" {
			t.Errorf("%s runs template %d with EXTRA=%v after the roll", s.ID, s.TemplateVersion, getInfo(t, s)["extra"])
		}
	}
	if c := f.Capacity(); c.Desired != 2 || c.Max != 2 {
		t.Errorf("capacity after the roll %+v, want desired 2, max 2", c)
	}
	// Nothing left to roll: a second roll does nothing.
	replaced = nil
	if err := f.Roll(context.Background(), time.Second, func(o, n string) { replaced = append(replaced, o) }); err != nil || len(replaced) != 0 {
		t.Errorf("second roll replaced %v, %v", replaced, err)
	}
}
