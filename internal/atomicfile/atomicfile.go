// Package atomicfile replaces files so that readers, and a crash at any moment, see the old content or the new, never a mix.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempMarker is in the name of every temp file WriteFile creates
// (<name>.tmp-<random>), so a reader may sweep what a crash left behind.
const TempMarker = ".tmp-"

// Options adjusts WriteFile.
type Options struct {
	// Prepare, if set, runs on the synced temp file before the rename (to
	// chown it, for example). An error aborts the write and removes the temp.
	Prepare func(tmp string) error
	// BeforeRename, if set, is a failpoint: an error aborts the write just
	// before the rename and leaves the temp file behind, as a crash would.
	BeforeRename func() error
}

// WriteFile replaces path with data: it writes a temp file in the same
// directory with mode perm, fsyncs it, renames it over path and fsyncs the
// directory.
func WriteFile(path string, data []byte, perm os.FileMode, opts ...Options) (err error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+TempMarker+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	keep := false
	defer func() {
		if err != nil && !keep {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
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
	if o.Prepare != nil {
		if err := o.Prepare(tmp); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if o.BeforeRename != nil {
		if err := o.BeforeRename(); err != nil {
			keep = true
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
