// Package peercred identifies the local process at the other end of a TCP connection, and guards a listener so only allowed processes get through.
package peercred

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/haven-platform/haven/internal/proc"
)

// PeerPIDs returns the processes holding the client end of the local TCP
// connection peer→local.
func PeerPIDs(peer, local netip.AddrPort) ([]int, error) {
	return proc.SocketHolders(peer, local)
}

func (g *Guard) check(c net.Conn) error {
	peer, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return errors.New("not a TCP connection")
	}
	var pids []int
	var candidates []int
	if g.Candidates != nil {
		candidates = g.Candidates()
	}
	if candidates != nil {
		// Look for the socket among the candidates' files only: a few
		// processes, not every process's every descriptor.
		_, inode, err := SocketOwner(peer.AddrPort(), local.AddrPort())
		if err != nil {
			return err
		}
		target := "socket:[" + strconv.FormatUint(inode, 10) + "]"
		for _, pid := range candidates {
			if holds(pid, target) {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return errors.New("no process of the instance holds the connection")
		}
	} else {
		var err error
		if pids, err = PeerPIDs(peer.AddrPort(), local.AddrPort()); err != nil {
			return err
		}
	}
	for _, pid := range pids {
		if err := g.Allow(pid); err != nil {
			return err
		}
	}
	return nil
}

// holds reports whether process pid has a file descriptor on target
// ("socket:[inode]").
func holds(pid int, target string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && l == target {
			return true
		}
	}
	return false
}

// InstanceProcesses lists the processes of the instance whose process
// group leader returns (none while it returns 0): a Guard's Candidates.
func InstanceProcesses(leader func() int) func() []int {
	return func() []int {
		if l := leader(); l > 0 {
			return proc.Group(l)
		}
		return nil
	}
}

// Started returns the leader of pid's process group and the leader's
// environment, provided this process started the leader: the daemon's own
// instances and tasks, each in a process group of its own.
func Started(pid int) (leader int, env []string, err error) {
	s, err := proc.ReadStat(pid)
	if err != nil {
		return 0, nil, err
	}
	leader = s.PGID
	if ls, err := proc.ReadStat(leader); err != nil || ls.PPID != os.Getpid() {
		return 0, nil, fmt.Errorf("process %d (group %d) was not started by the region", pid, leader)
	}
	env, err = proc.Environ(leader)
	if err != nil {
		return 0, nil, fmt.Errorf("read environment of %d: %w", leader, err)
	}
	return leader, env, nil
}

// HasEnv reports whether env holds exactly kv ("KEY=value").
func HasEnv(env []string, kv string) bool { return slices.Contains(env, kv) }

// InstanceCaller allows the processes of one instance: its process group
// is led by a process this daemon started with HAVEN_INSTANCE_ID=id, and,
// when leader returns a pid (the instance's, 0 when unknown), that process.
func InstanceCaller(id string, leader func() int) func(pid int) error {
	return func(pid int) error {
		l, env, err := Started(pid)
		if err != nil {
			return err
		}
		if !HasEnv(env, "HAVEN_INSTANCE_ID="+id) {
			return fmt.Errorf("process %d belongs to another instance or none", pid)
		}
		if want := leader(); want != 0 && want != l {
			return fmt.Errorf("process %d is not in instance %s's process group %d", pid, id, want)
		}
		return nil
	}
}

// TaskCaller allows a one-off task this daemon started: a process group
// that is no instance and whose leader runs exactly argv.
func TaskCaller(argv []string) func(pid int) error {
	return func(pid int) error {
		l, env, err := Started(pid)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HAVEN_INSTANCE_ID=") }) {
			return fmt.Errorf("process %d is an instance, not the task", pid)
		}
		if cl, err := proc.Cmdline(l); err != nil || !slices.Equal(cl, argv) {
			return fmt.Errorf("process %d is not the task", pid)
		}
		return nil
	}
}
