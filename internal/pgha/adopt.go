package pgha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/proc"
)

// postmasterRecord is what a controller keeps of each postmaster it
// starts: the process's identity, for a later controller to adopt it.
type postmasterRecord struct {
	Node      string        `json:"node"`
	DataDir   string        `json:"data_dir"`
	Process   proc.Identity `json:"process"`
	StartedAt time.Time     `json:"started_at"`
}

// saveRecord records the postmaster pid just started.
func (in *instance) saveRecord(pid int) {
	if in.record == "" {
		return
	}
	id, err := proc.IdentityOf(pid)
	if err != nil {
		in.log.Warn("identify the postmaster: a later controller cannot adopt it", "pid", pid, "err", err)
		return
	}
	b, _ := json.MarshalIndent(postmasterRecord{Node: in.node.Name, DataDir: in.node.DataDir, Process: id, StartedAt: time.Now()}, "", "  ")
	if err := atomicfile.WriteFile(in.record, append(b, '\n'), 0o600); err != nil {
		in.log.Warn("record the postmaster", "pid", pid, "err", err)
	}
}

// exitedNow notes that postmaster pid has exited: no pid, no record, and
// what it left in its process group is killed.
func (in *instance) exitedNow(pid int, status string) {
	in.pidv.CompareAndSwap(int64(pid), 0)
	in.log.Info("postmaster exited", "pid", pid, "status", status)
	// Reap whatever the postmaster left in its group.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if in.record != "" {
		if b, err := os.ReadFile(in.record); err == nil {
			var r postmasterRecord
			if json.Unmarshal(b, &r) == nil && r.Process.PID == pid {
				_ = os.Remove(in.record)
			}
		}
	}
}

// ErrNotAdoptable means no running postmaster of this node could be
// proven to be the one a controller recorded.
var ErrNotAdoptable = errors.New("no postmaster to adopt")

// adopt takes over the postmaster an earlier controller started on this
// node and recorded, when it still runs as that process (pid, start time,
// cgroup, network namespace) and is the one PostgreSQL's own lock file
// (postmaster.pid) names. Nothing is restarted or reconfigured. A pid that
// runs another program now is left alone (the error says so).
func (in *instance) adopt() (int, error) {
	if in.record == "" {
		return 0, ErrNotAdoptable
	}
	b, err := os.ReadFile(in.record)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: no record", ErrNotAdoptable)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotAdoptable, err)
	}
	var r postmasterRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("%w: record %s: %v", ErrNotAdoptable, in.record, err)
	}
	if r.DataDir != in.node.DataDir {
		return 0, fmt.Errorf("%w: the record is of data directory %s", ErrNotAdoptable, r.DataDir)
	}
	if err := r.Process.Check(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotAdoptable, err)
	}
	pm, err := os.ReadFile(filepath.Join(in.node.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotAdoptable, err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pm), "\n", 2)[0])); n != r.Process.PID {
		return 0, fmt.Errorf("%w: postmaster.pid names %d, the record %d", ErrNotAdoptable, n, r.Process.PID)
	}
	gone, err := r.Process.Gone(context.Background())
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotAdoptable, err)
	}
	pid := r.Process.PID
	done := make(chan struct{})
	in.mu.Lock()
	in.procPID, in.done = pid, done
	in.mu.Unlock()
	in.pidv.Store(int64(pid))
	go func() {
		<-gone
		in.exitedNow(pid, "exited (adopted: its status went to its first parent)")
		close(done)
	}()
	in.log.Info("adopted postmaster", "pid", pid, "since", r.StartedAt)
	return pid, nil
}

// answers checks that the node accepts connections and is (recovery true)
// or is not (false) a standby.
func (in *instance) answers(ctx context.Context, wantRecovery bool) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := in.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var rec bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		return fmt.Errorf("ask %s: %w", in.node.Name, err)
	}
	if rec != wantRecovery {
		return fmt.Errorf("%s: in recovery %v, want %v", in.node.Name, rec, wantRecovery)
	}
	return nil
}

// release forgets an adopted postmaster without stopping it (Detach).
func (in *instance) release() {
	in.mu.Lock()
	in.procPID, in.done = 0, nil
	in.mu.Unlock()
	in.pidv.Store(0)
}
