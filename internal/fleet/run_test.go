package fleet

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/proc"
)

// A command run on an instance runs in a process group of its own (an
// instance leads its own session, which nothing else can join), counted
// among the instance's groups while it runs, and names its instance
// whatever environment it was given.
func TestRunCountsItsGroupAsTheInstances(t *testing.T) {
	cfg := testConfig(t, &eventLog{})
	cfg.Min, cfg.Desired = 1, 1
	f := startFleet(t, cfg)
	waitFor(t, "an instance in service", func() bool { return len(inService(f)) == 1 })
	in := inService(f)[0]
	if g := f.ProcessGroups(in.ID); !slices.Equal(g, []int{in.PID}) {
		t.Fatalf("groups of an idle instance %v, want [%d]", g, in.PID)
	}
	if g := f.ProcessGroups("i-nope"); g != nil {
		t.Errorf("groups of an unknown instance %v", g)
	}

	type result struct {
		res RunResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := f.Run(context.Background(), in.ID, []string{"/bin/sh", "-c", `echo "$HAVEN_INSTANCE_ID"; exec sleep 30`},
			[]string{"PATH=/usr/bin:/bin", "HAVEN_INSTANCE_ID=i-someone-else"}, 2*time.Second)
		done <- result{res, err}
	}()
	var groups []int
	waitFor(t, "the command's group among the instance's", func() bool {
		groups = f.ProcessGroups(in.ID)
		return len(groups) == 2
	})
	st, err := proc.ReadStat(groups[1])
	if err != nil {
		t.Fatal(err)
	}
	if groups[0] != in.PID || groups[1] == in.PID || st.PGID != groups[1] {
		t.Errorf("groups %v (the command's process group %d), want [%d, the command's own]", groups, st.PGID, in.PID)
	}
	r := <-done // killed at its timeout, with its group
	if r.err != nil || strings.TrimSpace(r.res.Stdout) != in.ID {
		t.Errorf("run: %v, stdout %q; want the instance's own id", r.err, r.res.Stdout)
	}
	if g := f.ProcessGroups(in.ID); !slices.Equal(g, []int{in.PID}) {
		t.Errorf("groups after the command ended %v, want [%d]", g, in.PID)
	}
	if proc.Alive(groups[1]) {
		t.Errorf("the command %d outlived its timeout", groups[1])
	}
}
