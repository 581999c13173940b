package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestIdentityOfSelf(t *testing.T) {
	id, err := IdentityOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if id.StartTime == 0 || id.NetNS == 0 || id.Cgroup == "" {
		t.Fatalf("identity has empty fields: %+v", id)
	}
	if err := id.Check(); err != nil {
		t.Fatalf("own identity does not check: %v", err)
	}
	ns, err := Inode("/proc/self/ns/net")
	if err != nil || ns != id.NetNS {
		t.Fatalf("netns %d, /proc/self/ns/net %d (%v)", id.NetNS, ns, err)
	}
}

func TestIdentityDetectsReuseAndExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	id, err := IdentityOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// A record naming the same pid with another start time is another
	// program that reused the pid.
	for name, rec := range map[string]Identity{
		"start time": {PID: id.PID, StartTime: id.StartTime + 1, Cgroup: id.Cgroup, NetNS: id.NetNS},
		"cgroup":     {PID: id.PID, StartTime: id.StartTime, Cgroup: id.Cgroup + "x", NetNS: id.NetNS},
		"netns":      {PID: id.PID, StartTime: id.StartTime, Cgroup: id.Cgroup, NetNS: id.NetNS + 1},
	} {
		err := rec.Check()
		if !errors.Is(err, ErrNotSame) {
			t.Errorf("%s differs: Check = %v, want ErrNotSame", name, err)
		}
		// Gone reports such a record gone at once, without touching the process.
		ch, err := rec.Gone(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Errorf("%s differs: Gone did not report the record gone", name)
		}
	}
	if err := id.Check(); err != nil {
		t.Fatalf("the real record: %v", err)
	}
	gone, err := id.Gone(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
		t.Fatal("Gone closed while the process runs")
	case <-time.After(300 * time.Millisecond):
	}
	_ = cmd.Process.Kill()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("Gone not closed after the process was killed")
	}
	// Exited (a zombie until reaped, then gone): no longer the process.
	if err := id.Check(); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("Check after kill = %v, want gone", err)
	}
}

func TestParseStartTime(t *testing.T) {
	stat := "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
	n, err := parseStartTime([]byte(stat))
	if err != nil || n != 987654 {
		t.Fatalf("start time = %d, %v; want 987654", n, err)
	}
	if _, err := parseStartTime([]byte("1 (x) S 1")); err == nil {
		t.Fatal("short stat parsed")
	}
}
