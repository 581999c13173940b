package pgha

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/proc"
)

// recordingEndpoint records what the controller asks of its endpoint.
type recordingEndpoint struct {
	mu    sync.Mutex
	calls []string
}

func (e *recordingEndpoint) SetTarget(epoch uint64, addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, fmt.Sprintf("set %s %d", addr, epoch))
}

func (e *recordingEndpoint) Pause() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, "pause")
}

func (e *recordingEndpoint) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

// TestAdoptRunningServers: a controller goes away without stopping the
// servers (a crashed or upgraded daemon); the next adopts both from the
// persisted epoch: same pids, same epoch, no failover, no pause of the
// endpoint, and the data is there.
func TestAdoptRunningServers(t *testing.T) {
	dir := testDir(t)
	ep1 := &recordingEndpoint{}
	cfg := Config{Nodes: testNodes(t, dir, 2), StateFile: filepath.Join(dir, "state.json"), Durability: DurabilityRequired, Endpoint: ep1}
	c1 := startTestCluster(t, cfg)
	waitEligible(t, c1)
	if err := c1.inst["db-a"].exec(context.Background(), "CREATE TABLE keep (v int); INSERT INTO keep VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	pa, pb := c1.inst["db-a"].pid(), c1.inst["db-b"].pid()
	c1.Detach()

	ep2 := &recordingEndpoint{}
	cfg.Endpoint = ep2
	var mu sync.Mutex
	var events []Event
	cfg.OnEvent = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	c2 := startTestCluster(t, cfg)
	if got := c2.Adopted(); got["db-a"] != pa || got["db-b"] != pb {
		t.Fatalf("adopted %v, want db-a %d and db-b %d", got, pa, pb)
	}
	time.Sleep(10 * c2.cfg.ProbeInterval) // probe rounds: nothing may happen
	st := c2.Status()
	if st.State.Epoch != 1 || st.State.Primary != "db-a" || !st.State.StandbyEligible {
		t.Fatalf("state after adoption %+v, want epoch 1, primary db-a, standby eligible", st.State)
	}
	if c2.inst["db-a"].pid() != pa || c2.inst["db-b"].pid() != pb {
		t.Fatalf("pids after adoption %d, %d, want %d, %d: nothing may restart", c2.inst["db-a"].pid(), c2.inst["db-b"].pid(), pa, pb)
	}
	if calls := ep2.all(); len(calls) != 1 || calls[0] != "set "+cfg.Nodes[0].Addr()+" 1" {
		t.Fatalf("endpoint calls %v, want one SetTarget of db-a for epoch 1", calls)
	}
	mu.Lock()
	for _, e := range events {
		if e.Kind != EventAdopted && e.Kind != EventStandbyEligible {
			t.Errorf("event %s (%s) after adoption", e.Kind, e.Message)
		}
	}
	mu.Unlock()
	if got := queryString(t, c2, "db-a", "SELECT v::text FROM keep"); got != "7" {
		t.Fatalf("row = %q, want 7", got)
	}
	if err := c2.inst["db-a"].exec(context.Background(), "INSERT INTO keep VALUES (8)"); err != nil {
		t.Fatalf("write after adoption (synchronous standby): %v", err)
	}
}

// TestAdoptLeavesReusedPidAlone: a postmaster record whose pid now runs
// another program is not adopted and that program is not touched; the
// server is started as usual.
func TestAdoptLeavesReusedPidAlone(t *testing.T) {
	dir := testDir(t)
	cfg := Config{Nodes: testNodes(t, dir, 1), StateFile: filepath.Join(dir, "state.json")}
	c1 := startTestCluster(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	id, err := proc.IdentityOf(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id.StartTime++
	b, _ := json.Marshal(postmasterRecord{Node: "db-a", DataDir: cfg.Nodes[0].DataDir, Process: id})
	if err := os.WriteFile(filepath.Join(dir, "db-a.postmaster.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := startTestCluster(t, cfg)
	if got := c2.Adopted(); len(got) != 0 {
		t.Fatalf("adopted %v from a record of another program", got)
	}
	if p := c2.inst["db-a"].pid(); p == 0 || p == other.Process.Pid {
		t.Fatalf("server pid %d", p)
	}
	if !pidAlive(other.Process.Pid) {
		t.Fatal("the program that reused the pid was killed")
	}
}
