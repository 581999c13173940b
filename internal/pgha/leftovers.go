package pgha

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KillLeftovers SIGKILLs every process of the OS user uid that a crashed
// controller left running on the PostgreSQL files under root: the postmasters (their command line names
// a data directory under root), the tools they ran (pgBackRest, pg_rewind),
// and every backend and auxiliary process (their working directory is the
// data directory). PostgreSQL puts each backend in a process group of its
// own, so killing the postmaster's group does not reach them, and while any
// of them lives it keeps the old shared memory block attached: a new
// postmaster then refuses to start ("pre-existing shared memory block is
// still in use"). It waits, up to wait, until every killed process has
// exited (a zombie counts: it has released its memory), and returns the
// pids it killed.
func KillLeftovers(root string, uid int, wait time.Duration) []int {
	root = filepath.Clean(root)
	var killed []int
	for _, pid := range procsUnder(root, uid) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	waitExited(killed, wait)
	return killed
}

// procsUnder lists the processes of uid (other than this one) whose working
// directory is root or below it, or whose command line names a path under
// root.
func procsUnder(root string, uid int) []int {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid <= 1 {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) != nil || int(st.Uid) != uid {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && under(cwd, root) {
			pids = append(pids, pid)
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cl, []byte{0}) {
			if mentions(string(arg), root) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// mentions reports whether a command-line argument names dir or a path in
// it, alone or as the value of an option (--pg1-path=DIR/…, -D DIR).
func mentions(arg, dir string) bool {
	if under(arg, dir) {
		return true
	}
	if i := strings.IndexByte(arg, '='); i >= 0 {
		return under(arg[i+1:], dir)
	}
	return false
}

// waitExited waits until every pid has exited or is a zombie, or until wait
// has passed.
func waitExited(pids []int, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && !isZombie(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
