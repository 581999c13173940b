package region

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// sweepLeftovers SIGKILLs what a crashed daemon of this state dir left
// running outside its cgroups and process groups: processes of the postgres
// OS user whose command line names the region's postgres root (pgBackRest
// workers, for example, which do not inherit Pdeathsig, or a restored
// server). Nothing else is touched — not a user's `tail -f` of a log in the
// state dir, nor the `haven up` waiting for this daemon. The state dir's lock
// guarantees no other daemon of this region is alive. It returns the pids it
// killed.
func sweepLeftovers(pgRoot string) []int {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var killed []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) != nil || int(st.Uid) != uid {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cl, []byte(pgRoot)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}
