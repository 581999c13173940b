package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/proc"
)

func TestMain(m *testing.M) {
	// A parent that starts a sandboxed sleep and exits at once: its child
	// must die with it (TestParentDeathKillsTheProgram).
	if os.Getenv("HAVEN_SANDBOX_TEST_PARENT") != "" {
		id, _ := strconv.ParseUint(os.Getenv("HAVEN_SANDBOX_TEST_PARENT"), 10, 32)
		cmd := exec.Command("/bin/sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := (Profile{UID: uint32(id), GID: uint32(id)}).Wrap(cmd); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		time.Sleep(300 * time.Millisecond) // let it exec
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the sandbox drops root's privileges: needs root (scripts/test runs as root)")
	}
}

func testProfile(t *testing.T) Profile {
	t.Helper()
	id, err := RegionID(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return Profile{UID: id, GID: id}
}

func runIn(t *testing.T, p Profile, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root", "TMPDIR=/somewhere"}
	if err := p.Wrap(cmd); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The program runs as the profile's user with no capability in any set,
// no_new_privs, its argv intact, HOME and TMPDIR on its private /tmp.
func TestProgramRunsUnprivileged(t *testing.T) {
	needRoot(t)
	p := testProfile(t)
	out, err := runIn(t, p, `cat /proc/self/status; echo "home=$HOME tmpdir=$TMPDIR argv0=$0"; id -G`)
	if err != nil {
		t.Fatalf("sandboxed sh: %v\n%s", err, out)
	}
	st, err := proc.ParseStatus([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	id := int(p.UID)
	if st.UIDs != [4]int{id, id, id, id} || st.GIDs != [4]int{id, id, id, id} {
		t.Errorf("uids %v gids %v, want all %d", st.UIDs, st.GIDs, id)
	}
	if st.CapInh|st.CapPrm|st.CapEff|st.CapBnd|st.CapAmb != 0 {
		t.Errorf("capabilities inh %x prm %x eff %x bnd %x amb %x, want none", st.CapInh, st.CapPrm, st.CapEff, st.CapBnd, st.CapAmb)
	}
	if !st.NoNewPrivs {
		t.Error("NoNewPrivs is 0")
	}
	if !strings.Contains(out, "home=/tmp tmpdir=/tmp argv0=/bin/sh") {
		t.Errorf("environment or argv changed: %s", out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), strconv.Itoa(id)) {
		t.Errorf("supplementary groups left: %s", out)
	}
}

// /tmp is the program's own: it sees nothing of the host's, leaves nothing
// in it, and cannot read root's files.
func TestPrivateTmpAndNoRootFiles(t *testing.T) {
	needRoot(t)
	p := testProfile(t)
	host, err := os.CreateTemp("/tmp", "haven-sandbox-host-")
	if err != nil {
		t.Fatal(err)
	}
	host.Close()
	t.Cleanup(func() { os.Remove(host.Name()) })
	// Outside /tmp (hidden in the sandbox), in a directory others may
	// traverse, as the state dir (0711): the file's own mode must stop it.
	secretDir, err := os.MkdirTemp("/run", "haven-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(secretDir) })
	if err := os.Chmod(secretDir, 0o711); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(secretDir, "root.key")
	if err := os.WriteFile(secret, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("haven-sandbox-mark-%d", time.Now().UnixNano())
	out, err := runIn(t, p, fmt.Sprintf(`ls -A /tmp | wc -l; test -e %s && echo HOST-VISIBLE; touch /tmp/%s /var/tmp/%s && echo wrote; cat %s 2>&1; true`,
		host.Name(), marker, marker, secret))
	if err != nil {
		t.Fatalf("sandboxed sh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "0" || strings.Contains(out, "HOST-VISIBLE") {
		t.Errorf("the private /tmp is not empty or shows the host's:\n%s", out)
	}
	if !strings.Contains(out, "wrote") {
		t.Errorf("cannot write its private /tmp:\n%s", out)
	}
	if !strings.Contains(out, "Permission denied") {
		t.Errorf("read a 0600 root file:\n%s", out)
	}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if _, err := os.Stat(filepath.Join(d, marker)); err == nil {
			os.Remove(filepath.Join(d, marker))
			t.Errorf("the sandbox's file reached the host's %s", d)
		}
	}
}

// Dropping root clears the parent-death signal; the launcher arms it again:
// a program whose parent dies is killed.
func TestParentDeathKillsTheProgram(t *testing.T) {
	needRoot(t)
	p := testProfile(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HAVEN_SANDBOX_TEST_PARENT="+strconv.Itoa(int(p.UID)))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("parent: %v\n%s", err, out.String())
	}
	sc := bufio.NewScanner(&out)
	sc.Scan()
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil {
		t.Fatalf("parent printed %q", out.String())
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	deadline := time.Now().Add(5 * time.Second)
	for proc.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if proc.Alive(pid) {
		t.Errorf("sandboxed process %d outlived its parent", pid)
	}
}

func TestProfileValidateAndRegionID(t *testing.T) {
	if err := (Profile{UID: 0, GID: 5}).Validate(); err == nil {
		t.Error("uid 0 accepted")
	}
	a, err := RegionID("/state/one")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RegionID("/state/one")
	if a != b || a < 1_900_000_000 || a >= 2_000_000_000 {
		t.Errorf("RegionID = %d, %d: want the same id in range", a, b)
	}
}

// A program that lives under /tmp (a test build) still runs: its directory,
// alone, is bound into the private /tmp, read-only.
func TestProgramUnderTmpRuns(t *testing.T) {
	needRoot(t)
	p := testProfile(t)
	dir, err := os.MkdirTemp("/tmp", "haven-sandbox-prog-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil { // only the read-only bind stops a write
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nls -A /tmp; touch "+dir+"/x 2>/dev/null && echo WROTE-HOST-DIR; true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	other, err := os.CreateTemp("/tmp", "haven-sandbox-other-")
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	t.Cleanup(func() { os.Remove(other.Name()) })
	cmd := exec.Command(prog)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if err := p.Wrap(cmd); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("program under /tmp: %v\n%s", err, out)
	}
	if strings.TrimSpace(strings.Split(string(out), "\n")[0]) != filepath.Base(dir) || strings.Contains(string(out), filepath.Base(other.Name())) {
		t.Errorf("the private /tmp shows more than the program's directory:\n%s", out)
	}
	if strings.Contains(string(out), "WROTE-HOST-DIR") {
		t.Errorf("the program's directory is writable from the sandbox:\n%s", out)
	}
}
