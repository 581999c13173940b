package pgha

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestProcsUnderMatchesOnlyServersOfTheDirectory runs stand-ins (copies of
// sleep named postgres) and bystanders: only servers working in the data
// directory match, also through a symbolic link; a shell-like bystander in
// the same directory, and a server of a sibling directory, never do.
func TestProcsUnderMatchesOnlyServersOfTheDirectory(t *testing.T) {
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "bin", "postgres")
	os.MkdirAll(filepath.Dir(fake), 0o755)
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "pg")
	dataDir := filepath.Join(root, "db_a", "data")
	sibling := filepath.Join(root, "db_a", "data2")
	restore := filepath.Join(root, "restores", "r1")
	for _, d := range []string{dataDir, sibling, restore} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	start := func(bin, cwd string) int {
		cmd := exec.Command(bin, "60")
		cmd.Dir = cwd
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process.Pid
	}
	server := start(fake, dataDir)
	bystander := start(sleep, dataDir) // a user's shell or tail -f there
	siblingServer := start(fake, sibling)
	restored := start(fake, restore)

	uid := os.Getuid()
	check := func(what string, got []int, want ...int) {
		t.Helper()
		slices.Sort(got)
		slices.Sort(want)
		for _, pid := range []int{server, bystander, siblingServer, restored} {
			if slices.Contains(got, pid) != slices.Contains(want, pid) {
				t.Errorf("%s: got %v, want %v", what, got, want)
				return
			}
		}
	}
	check("exact data dir", procsUnder(dataDir, uid, true), server)
	check("exact data dir through a link", procsUnder(filepath.Join(link, "db_a", "data"), uid, true), server)
	check("postgres root", procsUnder(root, uid, false), server, siblingServer, restored)
	check("postgres root through a link", procsUnder(link, uid, false), server, siblingServer, restored)
	check("another user", procsUnder(root, uid+1, false))
}
