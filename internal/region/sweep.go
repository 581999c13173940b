package region

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sweepLeftovers SIGKILLs what a crashed daemon of this state dir left
// running outside its cgroups and process groups: any process whose command
// line names the state dir or the postgres root (pgBackRest workers, for
// example, which do not inherit Pdeathsig). haven's own processes — this
// daemon and CLI invocations such as the `up` waiting for it — are spared;
// the state dir's lock guarantees no other daemon is alive. It returns the
// pids it killed.
func sweepLeftovers(stateDir, pgRoot string) []int {
	self, _ := os.Executable()
	selfReal, _ := filepath.EvalSymlinks(self)
	ents, _ := os.ReadDir("/proc")
	var killed []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cl) == 0 {
			continue
		}
		if !bytes.Contains(cl, []byte(stateDir)) && !bytes.Contains(cl, []byte(pgRoot)) {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			exe = strings.TrimSuffix(exe, " (deleted)")
			if exe == self || exe == selfReal || filepath.Base(exe) == "haven" {
				continue
			}
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}
