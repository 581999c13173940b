package fleet

import (
	"context"
	"maps"
	"testing"
)

// TestFleetRefreshPrimitives: with a refresh on, the fleet neither scales
// in the refresh's extra instance nor replaces what the refresh
// terminates; Launch runs the given version; SetTemplate changes what
// later capacity launches run; turning the refresh off trims to desired.
func TestFleetRefreshPrimitives(t *testing.T) {
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Template.Version = "v1"
	f := startFleet(t, cfg)
	waitFor(t, "2 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })

	f.SetRefresh(true)
	v2 := cfg.Template
	v2.Version = "v2"
	v2.Env = maps.Clone(v2.Env)
	v2.Env["EXTRA"] = "v2"
	id, err := f.Launch(context.Background(), v2, "a")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 in service, 2/1", func() bool { return settled(f, map[string]int{"a": 2, "b": 1}) })
	var old string
	for _, in := range f.Instances() {
		if in.ID == id && in.Version != "v2" {
			t.Errorf("launched %s runs %q, want v2", id, in.Version)
		}
		if in.Zone == "a" && in.ID != id {
			old = in.ID
		}
	}
	if err := f.Terminate(context.Background(), old, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 in service, 1/1", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	for _, in := range f.Instances() {
		if in.ID == old {
			t.Fatalf("%s still listed", old)
		}
	}
	if _, err := f.Launch(context.Background(), v2, "z"); err == nil {
		t.Error("launch in an unknown zone: no error")
	}

	// Off with an extra instance: the plan trims the oldest (v1) in the fuller zone.
	if _, err := f.Launch(context.Background(), v2, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 in service", func() bool { return settled(f, map[string]int{"a": 1, "b": 2}) })
	if err := f.SetTemplate(v2); err != nil {
		t.Fatal(err)
	}
	f.SetRefresh(false)
	waitFor(t, "2 in service, 1/1", func() bool { return settled(f, map[string]int{"a": 1, "b": 1}) })
	if got := f.Template().Version; got != "v2" {
		t.Errorf("template %s, want v2", got)
	}
}
