package pgha

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// PrepareRoot returns the directory for everything the postgres OS user
// must reach under stateDir (database nodes, the backup repository),
// creating it with its db subdirectory. PostgreSQL refuses to run as root,
// so that user must be able to traverse every parent directory.
// <state-dir>/pg is used when it can; when a parent is closed to others (a
// checkout under /root, mode 0700), the data goes to
// /var/lib/haven/<hash of the state dir> and <state-dir>/pg is a symlink to it.
func PrepareRoot(stateDir string) (string, error) {
	link := filepath.Join(stateDir, "pg")
	if target, err := os.Readlink(link); err == nil {
		return target, os.MkdirAll(filepath.Join(target, "db"), 0o711)
	}
	dir := link
	if !traversable(stateDir) {
		sum := sha256.Sum256([]byte(stateDir))
		dir = filepath.Join("/var/lib/haven", hex.EncodeToString(sum[:8]))
		if err := os.MkdirAll("/var/lib/haven", 0o711); err != nil {
			return "", fmt.Errorf("create %s for the database (the postgres user cannot enter %s): %w", dir, stateDir, err)
		}
		if err := os.Symlink(dir, link); err != nil && !os.IsExist(err) {
			return "", fmt.Errorf("link %s: %w", link, err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "db")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// traversable reports whether others may search every directory from / to dir.
func traversable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}
