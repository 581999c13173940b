package secrets

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Failpoint injects failures at named points; production code passes nil.
type Failpoint interface {
	// Hit returns a non-nil error to make the operation fail at the named point.
	Hit(name string) error
}

// Failpoint names.
const (
	// FailAfterTempWrite aborts a state write after the temp file is written and
	// synced, before it is renamed into place (a crash at the worst moment).
	FailAfterTempWrite = "store/after-temp-write"
)

const tempMarker = ".tmp-"

// writeFileAtomic replaces path with data: write a temp file in the same directory,
// fsync it, rename it over path, fsync the directory. Readers see the old or the new
// content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode, fp Failpoint) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := filepath.Join(dir, base+tempMarker+hex.EncodeToString(suffix))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	keepTemp := false
	defer func() {
		if err != nil && !keepTemp {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if fp != nil {
		if err := fp.Hit(FailAfterTempWrite); err != nil {
			keepTemp = true // a crash would leave it behind too
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
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
