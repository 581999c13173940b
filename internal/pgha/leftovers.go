package pgha

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/proc"
)

// KillLeftovers SIGKILLs what a controller that died without stopping left
// running on the PostgreSQL files under root, as the OS user uid:
//
//   - servers: processes named postgres working under root. A backend's
//     working directory is its data directory, and it is the only way to
//     find one (backends rewrite their command line). PostgreSQL puts each
//     backend in a process group of its own, so killing the postmaster's
//     group does not reach them, and while any of them lives it keeps the
//     old shared memory block attached: a new postmaster then refuses to
//     start ("pre-existing shared memory block is still in use");
//   - pgBackRest processes naming a path under root (archive-push workers
//     do not inherit Pdeathsig).
//
// Nothing else is touched: not a user's shell, editor or `tail -f` in the
// directory. Call it only when no server of this controller runs under
// root (at daemon start, or after the daemon died). It waits, up to wait,
// until every killed process has exited (a zombie counts: it has released
// its memory), and returns the pids it killed.
func KillLeftovers(root string, uid int, wait time.Duration) []int {
	return killAll(procsUnder(root, uid, false), wait)
}

// KillLeftoversExcept is KillLeftovers sparing the processes of keep (the
// postmasters a controller runs, started or adopted) and every process
// below them: a restarted daemon clears what its predecessor left without
// touching the servers it adopted.
func KillLeftoversExcept(root string, uid int, wait time.Duration, keep []int) []int {
	kept := map[int]bool{}
	for _, pid := range keep {
		kept[pid] = true
	}
	var pids []int
	for _, pid := range procsUnder(root, uid, false) {
		if !descendsFrom(pid, kept) {
			pids = append(pids, pid)
		}
	}
	return killAll(pids, wait)
}

// descendsFrom reports whether pid is one of kept or below one, walking
// its parents (a process forked after any list of descendants was taken
// is still found).
func descendsFrom(pid int, kept map[int]bool) bool {
	for i := 0; pid > 1 && i < 64; i++ {
		if kept[pid] {
			return true
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			return false
		}
		pid = st.PPID
	}
	return false
}

// killServer SIGKILLs every postgres process of uid working in dataDir
// itself: the processes of an earlier server on that data directory.
func killServer(dataDir string, uid int, wait time.Duration) []int {
	return killAll(procsUnder(dataDir, uid, true), wait)
}

func killAll(pids []int, wait time.Duration) []int {
	var killed []int
	for _, pid := range pids {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	waitExited(killed, wait)
	return killed
}

// procsUnder lists the processes of uid (other than this one) that belong
// to the PostgreSQL files at root: named postgres with their working
// directory root (exact) or under it, or (not exact) named pgbackrest with
// a path under root on their command line. The kernel reports working
// directories with symbolic links resolved; root is compared both ways.
func procsUnder(root string, uid int, exact bool) []int {
	roots := []string{filepath.Clean(root)}
	if r, err := filepath.EvalSymlinks(root); err == nil && r != roots[0] {
		roots = append(roots, r)
	}
	self := os.Getpid()
	var pids []int
	for _, pid := range proc.PIDs() {
		if pid == self || pid <= 1 {
			continue
		}
		if u, err := proc.UID(pid); err != nil || u != uid {
			continue
		}
		comm, err := proc.Comm(pid)
		if err != nil {
			continue
		}
		switch comm {
		case "postgres":
			if cwd, err := proc.Cwd(pid); err == nil && anyMatch(roots, func(r string) bool {
				return cwd == r || (!exact && under(cwd, r))
			}) {
				pids = append(pids, pid)
			}
		case "pgbackrest":
			if exact {
				continue
			}
			cl, err := proc.Cmdline(pid)
			if err != nil {
				continue
			}
			for _, arg := range cl {
				if anyMatch(roots, func(r string) bool { return mentions(arg, r) }) {
					pids = append(pids, pid)
					break
				}
			}
		}
	}
	return pids
}

func anyMatch(roots []string, f func(string) bool) bool {
	for _, r := range roots {
		if f(r) {
			return true
		}
	}
	return false
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// mentions reports whether a command-line argument names dir or a path in
// it, alone or as the value of an option (--pg1-path=DIR/…).
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
		for syscall.Kill(pid, 0) == nil && !proc.IsZombie(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
