package region

import (
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/haven-platform/haven/internal/pgha"
)

// sweepLeftovers SIGKILLs what a crashed daemon of this state dir left
// running outside its cgroups and process groups, under the region's
// postgres root (see pgha.KillLeftovers: PostgreSQL backends, each in a
// process group of its own, and pgBackRest workers, which do not inherit
// Pdeathsig). The servers run as the postgres OS user when the daemon is
// root, as the daemon's own user otherwise. The state dir's lock
// guarantees no other daemon of this region is alive. The processes of
// keep (the postmasters running now: adopted or started) and their
// descendants are spared. It returns the pids it killed.
func sweepLeftovers(pgRoot string, keep []int) []int {
	uid := os.Geteuid()
	if uid == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			return nil
		}
	}
	return pgha.KillLeftoversExcept(pgRoot, uid, 10*time.Second, keep)
}
