package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Identity is what proves that a running process is the one a record
// names: a pid alone may have been reused by another program since. The
// record a daemon keeps of each process it starts (an instance, a database
// server, the load balancer) is an Identity, and a later daemon adopts the
// process only when every field still matches.
type Identity struct {
	// PID is the process id.
	PID int `json:"pid"`
	// StartTime is when the process started, in clock ticks after boot
	// (field 22 of /proc/PID/stat): two processes that share a pid never
	// share a start time.
	StartTime uint64 `json:"start_time"`
	// Cgroup is the content of /proc/PID/cgroup, one line per hierarchy.
	Cgroup string `json:"cgroup"`
	// NetNS is the inode of the process's network namespace
	// (/proc/PID/ns/net).
	NetNS uint64 `json:"netns"`
}

// ErrNotSame wraps every reason why a process is not the one a record names.
var ErrNotSame = errors.New("not the recorded process")

// IdentityOf reads the identity of the running process pid.
func IdentityOf(pid int) (Identity, error) {
	b, err := os.ReadFile(path(pid, "stat"))
	if err != nil {
		return Identity{}, fmt.Errorf("identify process %d: %w", pid, err)
	}
	st, err := ParseStat(b)
	if err != nil {
		return Identity{}, fmt.Errorf("identify process %d: %w", pid, err)
	}
	if st.State == 'Z' || st.State == 'X' {
		return Identity{}, fmt.Errorf("identify process %d: it has exited (zombie)", pid)
	}
	start, err := parseStartTime(b)
	if err != nil {
		return Identity{}, fmt.Errorf("identify process %d: %w", pid, err)
	}
	cg, err := os.ReadFile(path(pid, "cgroup"))
	if err != nil {
		return Identity{}, fmt.Errorf("identify process %d: %w", pid, err)
	}
	ns, err := Inode(path(pid, "ns/net"))
	if err != nil {
		return Identity{}, fmt.Errorf("identify process %d: %w", pid, err)
	}
	return Identity{PID: pid, StartTime: start, Cgroup: strings.TrimSpace(string(cg)), NetNS: ns}, nil
}

// parseStartTime reads field 22 (starttime) of a stat file: the 20th field
// after the command name's closing parenthesis.
func parseStartTime(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("parse stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("parse stat: too few fields")
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse stat: start time %q: %w", f[19], err)
	}
	return n, nil
}

// Inode is the inode number of path (following symbolic links): for a
// namespace file such as /proc/PID/ns/net or /run/netns/NAME, the
// namespace's identity.
func Inode(p string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", p, err)
	}
	return st.Ino, nil
}

// Check reports whether the process the identity names still runs as that
// same process: nil when every field matches, otherwise an error wrapping
// ErrNotSame (or saying it is gone) that says which field differs. A
// process that differs is not to be touched: its pid now belongs to
// another program.
func (id Identity) Check() error {
	if id.PID <= 1 {
		return fmt.Errorf("process %d: %w: no pid", id.PID, ErrNotSame)
	}
	cur, err := IdentityOf(id.PID)
	if err != nil {
		return fmt.Errorf("process %d is gone: %w", id.PID, err)
	}
	return id.Same(cur)
}

// Same compares id with cur, the identity read now, field by field.
func (id Identity) Same(cur Identity) error {
	switch {
	case cur.PID != id.PID:
		return fmt.Errorf("process %d: %w: pid %d", id.PID, ErrNotSame, cur.PID)
	case cur.StartTime != id.StartTime:
		return fmt.Errorf("process %d: %w: it started at tick %d, the record says %d (the pid was reused)", id.PID, ErrNotSame, cur.StartTime, id.StartTime)
	case cur.Cgroup != id.Cgroup:
		return fmt.Errorf("process %d: %w: its cgroup is %q, the record says %q", id.PID, ErrNotSame, oneLine(cur.Cgroup), oneLine(id.Cgroup))
	case cur.NetNS != id.NetNS:
		return fmt.Errorf("process %d: %w: its network namespace is %d, the record says %d", id.PID, ErrNotSame, cur.NetNS, id.NetNS)
	}
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// Gone returns a channel that is closed once the process the identity
// names has exited (or at once, if it no longer runs as that process). It
// works for any process, not only a child of this one: it waits on a
// pidfd (Linux 5.3), which becomes readable when the process exits, before
// it is reaped. The pidfd is opened first and the identity checked after,
// so a pid reused in between is never waited on. ctx ends the wait (the
// channel is then never closed).
func (id Identity) Gone(ctx context.Context) (<-chan struct{}, error) {
	done := make(chan struct{})
	fd, err := unix.PidfdOpen(id.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		close(done)
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watch process %d: pidfd_open: %w", id.PID, err)
	}
	if err := id.Check(); err != nil {
		unix.Close(fd)
		close(done)
		return done, nil
	}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if ctx.Err() != nil {
				return
			}
			// A bounded poll, so an ended ctx frees the goroutine.
			n, err := unix.Poll(fds, 250)
			if err != nil && !errors.Is(err, unix.EINTR) {
				// Cannot watch any more: fall back to polling the pid.
				for ctx.Err() == nil && id.Check() == nil {
					time.Sleep(50 * time.Millisecond)
				}
				if ctx.Err() == nil {
					close(done)
				}
				return
			}
			if n > 0 {
				close(done)
				return
			}
		}
	}()
	return done, nil
}
