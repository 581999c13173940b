package secrets

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/haven-platform/haven/internal/atomicfile"
	"github.com/haven-platform/haven/internal/failpoint"
)

// Failpoint injects failures at named points (*failpoint.Set implements it);
// production code passes nil unless HAVEN_FAILPOINT arms one.
type Failpoint interface {
	// Hit returns a non-nil error to make the operation fail at the named point.
	Hit(name string) error
}

// FailAfterTempWrite is the point that aborts a state write after the temp
// file is written and synced, before it is renamed into place (a crash at
// the worst moment).
const FailAfterTempWrite = failpoint.StoreAfterTempWrite

// tempMarker is in the name of every temp state file, so Open can sweep what a
// crash left behind.
const tempMarker = atomicfile.TempMarker

// writeFileAtomic replaces path with data (see atomicfile.WriteFile); fp may
// abort the write after the temp file is synced, as a crash would.
func writeFileAtomic(path string, data []byte, perm os.FileMode, fp Failpoint) error {
	var o atomicfile.Options
	if fp != nil {
		o.BeforeRename = func() error { return fp.Hit(FailAfterTempWrite) }
	}
	return atomicfile.WriteFile(path, data, perm, o)
}

// removeStaleTemps deletes temp files left by interrupted writes of path.
func removeStaleTemps(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base+tempMarker) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove stale temp file: %w", err)
			}
		}
	}
	return nil
}
