package region

import (
	"os/user"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/pgha"
)

// sweepLeftovers SIGKILLs what a crashed daemon of this state dir left
// running outside its cgroups and process groups: processes of the postgres
// OS user working in, or naming a path in, the region's postgres root —
// PostgreSQL backends (each in a process group of its own), pgBackRest
// workers (they do not inherit Pdeathsig), a restored server. Nothing else is
// touched: not a user's shell or `tail -f` in the state dir, nor the `haven
// up` waiting for this daemon. The state dir's lock guarantees no other
// daemon of this region is alive. It returns the pids it killed.
func sweepLeftovers(pgRoot string) []int {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil
	}
	return pgha.KillLeftovers(pgRoot, uid, 10*time.Second)
}
