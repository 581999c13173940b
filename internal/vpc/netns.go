package vpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces live, as with `ip netns`: a
// namespace haven creates can be inspected with `ip netns exec NAME ...`.
const NetnsDir = "/run/netns"

// Namespace is a named network namespace (a bind mount at NetnsDir/Name).
//
// How code gets into it: network namespaces belong to OS threads, so Do
// runs a function on a fresh goroutine locked to its OS thread, switches
// that thread into the namespace with setns(2), and switches it back
// afterwards (if switching back fails, the goroutine exits still locked
// and the Go runtime discards the thread, so no other goroutine ever runs
// in the wrong namespace). Everything else builds on Do: a socket belongs
// to the namespace of the thread that created it, for its whole life, so
// Listen and DialContext create theirs inside Do and the daemon then uses
// them from any goroutine; and a child process inherits the namespace of
// the thread that forks it, so Start calls exec.Cmd.Start inside Do. The
// child is the program itself, with no helper process or re-exec in
// between: its pid, process group, cgroup (SysProcAttr.CgroupFD) and
// credentials are exactly what the caller set, and nothing needs to be
// installed or handled in main.
type Namespace struct {
	name string
}

// Name returns the namespace's name.
func (ns Namespace) Name() string { return ns.name }

// Path returns the namespace's bind mount, e.g. /run/netns/hv0badf00d-rt.
func (ns Namespace) Path() string { return filepath.Join(NetnsDir, ns.name) }

// String returns the name.
func (ns Namespace) String() string { return ns.name }

// Exists reports whether the namespace is there.
func (ns Namespace) Exists() bool {
	_, err := os.Stat(ns.Path())
	return err == nil
}

// Do runs fn on an OS thread that is inside ns, and returns its error. Only
// that thread is inside: fn must not expect goroutines it starts to be.
// A panic in fn is re-raised in the caller.
func (ns Namespace) Do(fn func() error) error {
	target, err := netns.GetFromPath(ns.Path())
	if err != nil {
		return fmt.Errorf("enter namespace %s: %w", ns.name, err)
	}
	defer target.Close()
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the thread is back home; otherwise the
		// goroutine exits locked and the runtime kills the thread.
		orig, err := netns.Get()
		if err != nil {
			done <- result{err: fmt.Errorf("enter namespace %s: current namespace: %w", ns.name, err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			done <- result{err: fmt.Errorf("enter namespace %s: setns: %w", ns.name, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("leave namespace %s: setns: %w", ns.name, err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// Start starts cmd inside ns (exec.Cmd.Start on a thread inside it): the
// process and its children live in ns. The caller waits for it as usual.
func (ns Namespace) Start(cmd *exec.Cmd) error {
	if err := ns.Do(cmd.Start); err != nil {
		return fmt.Errorf("start %s in namespace %s: %w", cmd.Path, ns.name, err)
	}
	return nil
}

// Listen opens a listener inside ns, e.g. Listen(ctx, "tcp",
// "169.254.169.254:80") for an instance's metadata endpoint. The listener
// accepts only connections made inside ns (or routed into it): whoever
// connects to it is, by the kernel's word, in that namespace.
func (ns Namespace) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var l net.Listener
	err := ns.Do(func() error {
		var lc net.ListenConfig
		var err error
		l, err = lc.Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s in namespace %s: %w", address, ns.name, err)
	}
	return l, nil
}

// DialContext connects from inside ns, as a process in ns would. It fits
// http.Transport.DialContext. Use literal addresses: name resolution would
// run on other threads, outside ns.
func (ns Namespace) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from namespace %s: %w", address, ns.name, err)
	}
	return c, nil
}

// handle returns a netlink handle whose socket lives in ns.
func (ns Namespace) handle() (*netlink.Handle, error) {
	h, err := netns.GetFromPath(ns.Path())
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns.name, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", ns.name, err)
	}
	return nh, nil
}

// sysctl sets /proc/sys/<key> (dots as slashes) to value inside ns. These
// are per-namespace settings: the host's are never touched. A key the
// kernel lacks (e.g. IPv6 compiled out) is an error unless optional.
func (ns Namespace) sysctl(key, value string, optional bool) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return ns.Do(func() error {
		err := os.WriteFile(path, []byte(value), 0o644)
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("set %s=%s in namespace %s: %w", key, value, ns.name, err)
		}
		return nil
	})
}

// createNamespace creates ns as `ip netns add` does: an empty file at
// NetnsDir/name with a new network namespace bind-mounted on it. The thread
// that made the namespace goes back to its own namespace (or, if it cannot,
// is thrown away).
func createNamespace(name string) (Namespace, error) {
	ns := Namespace{name: name}
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return ns, fmt.Errorf("create namespace %s: %w", name, err)
	}
	f, err := os.OpenFile(ns.Path(), os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return ns, fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // unlocked only once back home, as in Do
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		err = unix.Mount(src, ns.Path(), "none", unix.MS_BIND, "")
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("return to own namespace: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("bind mount: %w", err)
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		unix.Unmount(ns.Path(), unix.MNT_DETACH)
		os.Remove(ns.Path())
		return ns, fmt.Errorf("create namespace %s: %w", name, err)
	}
	return ns, nil
}

// hostNamespace returns a handle to this process's own network namespace:
// that of its unlocked threads (Do and createNamespace return every thread
// they move, or discard it). Not /proc/self/ns/net: that is the main
// thread's, and a goroutine that exits locked on the main thread wedges it
// wherever it was.
func hostNamespace() (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netns.Get()
	if err != nil {
		return h, fmt.Errorf("open own namespace: %w", err)
	}
	return h, nil
}

// deleteNamespace unmounts and removes ns, as `ip netns del` does. The
// namespace itself (and its interfaces) goes when nothing holds it: kill
// the processes in it first (killIn).
func deleteNamespace(ns Namespace) error {
	err := unix.Unmount(ns.Path(), unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete namespace %s: unmount: %w", ns.name, err)
	}
	if err := os.Remove(ns.Path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", ns.name, err)
	}
	return nil
}

// pidsIn returns the processes whose network namespace is ns (as `ip netns
// pids` does), except this one.
func pidsIn(ns Namespace) ([]int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(ns.Path(), &st); err != nil {
		return nil, fmt.Errorf("find processes in namespace %s: %w", ns.name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("find processes in namespace %s: %w", ns.name, err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var pst syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &pst) != nil {
			continue // gone, or a kernel thread
		}
		if pst.Dev == st.Dev && pst.Ino == st.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killIn SIGKILLs every process in ns and waits (until ctx ends) for them
// to be gone, so that deleting ns frees it and its interfaces. It returns
// the pids it killed.
func killIn(ctx context.Context, ns Namespace) ([]int, error) {
	pids, err := pidsIn(ns)
	if err != nil || len(pids) == 0 {
		return nil, err
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for {
		left, err := pidsIn(ns)
		if err != nil {
			return pids, err
		}
		if len(left) == 0 || allZombies(left) {
			return pids, nil
		}
		select {
		case <-ctx.Done():
			return pids, fmt.Errorf("kill processes in namespace %s: %d still running (%v): %w", ns.name, len(left), left, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// allZombies reports whether every pid has exited (a zombie holds no
// namespace; its parent has yet to reap it).
func allZombies(pids []int) bool {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// The state follows the command name's closing parenthesis.
		i := len(b) - 1
		for i > 0 && b[i] != ')' {
			i--
		}
		if i+2 >= len(b) || b[i+2] != 'Z' {
			return false
		}
	}
	return true
}
