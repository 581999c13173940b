// Package sandbox starts a program as an unprivileged user with no capabilities, no_new_privs and a private /tmp, the way the region runs its app instances.
//
// Go's exec cannot mount, set no_new_privs or re-arm the parent-death
// signal between fork and exec, so a small launcher does it: Wrap rewrites
// an *exec.Cmd to run this process's own executable with a marker argument;
// the launcher (this package's init, in any binary that imports it) runs
// as root in a new mount namespace, mounts private tmpfs directories, drops
// to the profile's user and group, clears every capability set, sets
// no_new_privs and execs the original program with its original argv.
// Nothing else of the launching binary runs.
package sandbox

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// marker is the launcher's first argument.
const marker = "__haven_sandbox_exec__"

// DefaultTmpSize bounds each private tmpfs (/tmp, /var/tmp, /dev/shm).
const DefaultTmpSize = 64 << 20

// privateDirs get an empty tmpfs of their own in the sandbox (when they
// exist on the host): nothing written there is seen by, or left for,
// another process.
var privateDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// Profile is how a sandboxed program runs.
type Profile struct {
	// UID and GID are the unprivileged user and group it runs as, with no
	// supplementary groups. Required, not 0.
	UID, GID uint32
	// TmpSize bounds each private tmpfs in bytes. Default DefaultTmpSize.
	TmpSize int64
	// Launcher is the executable that sets the sandbox up: any program
	// that imports this package. Default: this process's executable.
	Launcher string
}

// Validate reports a profile that would not drop privileges.
func (p Profile) Validate() error {
	switch {
	case p.UID == 0 || p.GID == 0:
		return fmt.Errorf("sandbox: uid and gid must not be 0 (root), got %d:%d", p.UID, p.GID)
	case p.TmpSize < 0:
		return fmt.Errorf("sandbox: tmp size must be ≥ 0, got %d", p.TmpSize)
	}
	return nil
}

// Wrap makes cmd start in the sandbox. Call it once cmd's Path, Args, Env
// and Dir are final and before it starts (it composes with
// cgroup.Group.Start and with starting cmd inside a network namespace).
// cmd keeps its process group, parent-death signal and file descriptors;
// HOME and TMPDIR become /tmp, the private one. The launcher runs as
// root, so the caller must be root.
func (p Profile) Wrap(cmd *exec.Cmd) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if cmd.Err != nil {
		return cmd.Err
	}
	if os.Geteuid() != 0 {
		return errors.New("sandbox: the launcher must run as root to drop privileges; haven is not root")
	}
	launcher := p.Launcher
	if launcher == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("sandbox: find the launcher: %w", err)
		}
		launcher = exe
	}
	size := p.TmpSize
	if size == 0 {
		size = DefaultTmpSize
	}
	args := []string{launcher, marker, strconv.FormatUint(uint64(p.UID), 10), strconv.FormatUint(uint64(p.GID), 10),
		strconv.FormatInt(size, 10), cmd.Path, "--"}
	cmd.Path, cmd.Args = launcher, append(args, cmd.Args...)
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = setEnv(setEnv(env, "HOME", "/tmp"), "TMPDIR", "/tmp")
	return nil
}

// setEnv returns env with key set to value, replacing any earlier value.
func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// RegionID returns the uid (and gid) of a region's instances: a number in
// 1,900,000,000–1,999,999,999 derived from key (the state dir), above the
// ranges systemd and container runtimes hand out and below 2³¹, that no
// user or group of this machine has (the next free one is taken when the
// first is). Nothing is created: the instances own no file on the host.
func RegionID(key string) (uint32, error) {
	const base, span = 1_900_000_000, 100_000_000
	h := fnv.New32a()
	h.Write([]byte(key))
	start := h.Sum32() % span
	for i := uint32(0); i < 1000; i++ {
		id := base + (start+i)%span
		s := strconv.FormatUint(uint64(id), 10)
		_, uerr := user.LookupId(s)
		_, gerr := user.LookupGroupId(s)
		if uerr != nil && gerr != nil {
			return id, nil
		}
	}
	return 0, errors.New("sandbox: no free uid for the region's instances in 1,900,000,000–1,999,999,999")
}

func init() {
	if len(os.Args) > 1 && os.Args[1] == marker {
		err := launch(os.Args[2:])
		fmt.Fprintf(os.Stderr, "haven sandbox: %v\n", err)
		os.Exit(126)
	}
}

// privateTmp mounts an empty tmpfs on d. When the program itself lives
// under d (a test build in /tmp), its directory is bound back in, read-only,
// at the same path: the program runs, and nothing else of the host's d is
// seen.
func privateTmp(d, program string, size int64) error {
	var keep *os.File
	dir := filepath.Dir(program)
	if strings.HasPrefix(dir+"/", d+"/") && dir != d {
		f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open the program's directory %s: %w", dir, err)
		}
		defer f.Close()
		keep = f
	}
	opts := "mode=1777,size=" + strconv.FormatInt(size, 10)
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount a private %s: %w", d, err)
	}
	if keep == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make room for the program's directory in the private %s: %w", d, err)
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(keep.Fd()))
	if err := unix.Mount(src, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the program's directory %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the program's directory %s read-only: %w", dir, err)
	}
	return nil
}

// launch sets the sandbox up and execs the program; it returns only on
// failure. args: uid gid tmpsize path -- argv...
func launch(args []string) error {
	if len(args) < 6 || args[4] != "--" {
		return fmt.Errorf("launcher: malformed arguments %q", args)
	}
	uid, err1 := strconv.ParseUint(args[0], 10, 32)
	gid, err2 := strconv.ParseUint(args[1], 10, 32)
	size, err3 := strconv.ParseInt(args[2], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || uid == 0 || gid == 0 {
		return fmt.Errorf("launcher: bad uid, gid or size %q: %v", args[:3], err)
	}
	path, argv := args[3], args[5:]
	// Every step below acts on this thread, which then execs: the new
	// program has its namespace, credentials and flags.
	runtime.LockOSThread()
	ppid := os.Getppid()

	// A mount namespace of this thread's own: the mounts below are seen by
	// the program alone, never by the host.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	for _, d := range privateDirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		if err := privateTmp(d, path, size); err != nil {
			return err
		}
	}
	// The bounding set first (dropping needs CAP_SETPCAP), then the ambient set.
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// Raw per-thread calls: Go's Setuid and friends change every thread
	// through a mechanism cgo builds do not support.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("clear supplementary groups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("set gid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("set uid %d: %w", uid, e)
	}
	// Leaving root cleared the permitted and effective sets; clear the
	// inheritable one too, so nothing is left to gain.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	// Changing credentials cleared the parent-death signal: arm it again,
	// then make sure the parent did not die in between.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set the parent-death signal: %w", err)
	}
	if os.Getppid() != ppid {
		return errors.New("the parent exited while the sandbox was set up")
	}
	err := unix.Exec(path, argv, os.Environ())
	return fmt.Errorf("exec %s as %d:%d: %w (the instance user must be able to reach and run it: check the permissions of its directories)", path, uid, gid, err)
}
