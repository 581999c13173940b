// Package proc is the one reader of /proc: process state, parentage, groups, environment, command line and the TCP sockets processes hold.
package proc

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Root is where procfs is mounted; tests may point it elsewhere.
var Root = "/proc"

func path(pid int, file string) string { return Root + "/" + strconv.Itoa(pid) + "/" + file }

// Stat is the part of /proc/<pid>/stat haven uses.
type Stat struct {
	// State is R, S, D, T, Z, X, ...
	State byte
	// PPID is the parent, PGID the process group, Session the session.
	PPID, PGID, Session int
	// CPU is the CPU time the process has used, user and system, in the
	// kernel's clock ticks (USER_HZ, 100 per second on Linux).
	CPU time.Duration
}

// clockTick is one USER_HZ tick: Linux fixes USER_HZ at 100 for user space.
const clockTick = 10 * time.Millisecond

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(path(pid, "stat"))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// ParseStat parses the content of a stat file. The command name, in
// parentheses, may hold spaces and parentheses itself: the fields start
// after the last ')'.
func ParseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("parse stat %q: no command name", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("parse stat %q: too few fields", b)
	}
	var s Stat
	var err1, err2, err3 error
	s.State = f[0][0]
	s.PPID, err1 = strconv.Atoi(f[1])
	s.PGID, err2 = strconv.Atoi(f[2])
	s.Session, err3 = strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil {
		return Stat{}, fmt.Errorf("parse stat %q: bad number", b)
	}
	// utime and stime are fields 14 and 15 of the line: 11 and 12 after
	// the command name.
	if len(f) > 12 {
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 == nil && err2 == nil {
			s.CPU = time.Duration(ut+st) * clockTick
		}
	}
	return s, nil
}

// Alive reports whether pid exists and has not exited (a zombie has).
func Alive(pid int) bool {
	s, err := ReadStat(pid)
	return err == nil && s.State != 'Z' && s.State != 'X'
}

// IsZombie reports whether pid has exited but was not reaped.
func IsZombie(pid int) bool {
	s, err := ReadStat(pid)
	return err == nil && (s.State == 'Z' || s.State == 'X')
}

// UID is the owner of pid.
func UID(pid int) (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(Root+"/"+strconv.Itoa(pid), &st); err != nil {
		return 0, err
	}
	return int(st.Uid), nil
}

// Status is the part of /proc/<pid>/status that says what a process may do.
type Status struct {
	// UIDs and GIDs are the real, effective, saved and filesystem ids.
	UIDs, GIDs [4]int
	// CapInh, CapPrm, CapEff, CapBnd and CapAmb are the capability sets:
	// inheritable, permitted, effective, bounding and ambient.
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	// NoNewPrivs is set when execve can never grant privileges (setuid
	// bits and file capabilities are ignored).
	NoNewPrivs bool
}

// ReadStatus reads /proc/<pid>/status.
func ReadStatus(pid int) (Status, error) {
	b, err := os.ReadFile(path(pid, "status"))
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(b)
}

// ParseStatus parses the content of a status file (other lines around it
// are ignored). Every field of Status must be present.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	seen := 0
	ids := func(v string, out *[4]int) error {
		f := strings.Fields(v)
		if len(f) != 4 {
			return fmt.Errorf("want 4 ids, got %q", v)
		}
		for i := range f {
			n, err := strconv.Atoi(f[i])
			if err != nil {
				return err
			}
			out[i] = n
		}
		return nil
	}
	caps := map[string]*uint64{"CapInh": &s.CapInh, "CapPrm": &s.CapPrm, "CapEff": &s.CapEff, "CapBnd": &s.CapBnd, "CapAmb": &s.CapAmb}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "Uid":
			err = ids(v, &s.UIDs)
		case "Gid":
			err = ids(v, &s.GIDs)
		case "NoNewPrivs":
			s.NoNewPrivs = v == "1"
		default:
			p, ok := caps[k]
			if !ok {
				continue
			}
			*p, err = strconv.ParseUint(v, 16, 64)
		}
		if err != nil {
			return Status{}, fmt.Errorf("parse status %s: %w", k, err)
		}
		seen++
	}
	if seen < 8 {
		return Status{}, fmt.Errorf("parse status: %d of the 8 fields found (Uid, Gid, NoNewPrivs, CapInh, CapPrm, CapEff, CapBnd, CapAmb)", seen)
	}
	return s, nil
}

// Comm is the process's command name (at most 15 bytes).
func Comm(pid int) (string, error) {
	b, err := os.ReadFile(path(pid, "comm"))
	return strings.TrimSpace(string(b)), err
}

// Cwd is the process's working directory, symbolic links resolved.
func Cwd(pid int) (string, error) { return os.Readlink(path(pid, "cwd")) }

// Cmdline is the process's arguments.
func Cmdline(pid int) ([]string, error) { return nulList(path(pid, "cmdline")) }

// Environ is the process's environment, as KEY=value strings.
func Environ(pid int) ([]string, error) { return nulList(path(pid, "environ")) }

func nulList(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// PIDs lists every process.
func PIDs() []int {
	ents, _ := os.ReadDir(Root)
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Descendants lists the processes below pid (children, their children, ...).
func Descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range PIDs() {
		if s, err := ReadStat(p); err == nil {
			children[s.PPID] = append(children[s.PPID], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Group lists the processes of process group pgid.
func Group(pgid int) []int {
	var out []int
	for _, p := range PIDs() {
		if s, err := ReadStat(p); err == nil && s.PGID == pgid {
			out = append(out, p)
		}
	}
	return out
}

// SocketHolders returns the processes holding the local TCP socket whose
// own end is local and whose peer is remote: its inode from
// /proc/net/tcp{,6}, then every process with a file descriptor on it.
func SocketHolders(local, remote netip.AddrPort) ([]int, error) {
	inode, err := socketInode(local, remote)
	if err != nil {
		return nil, err
	}
	target := "socket:[" + inode + "]"
	var pids []int
	for _, pid := range PIDs() {
		fds, err := os.ReadDir(path(pid, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(path(pid, "fd/"+fd.Name())); err == nil && l == target {
				pids = append(pids, pid)
				break
			}
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no local process holds the connection from %s", local)
	}
	return pids, nil
}

func socketInode(local, remote netip.AddrPort) (string, error) {
	for _, f := range []string{Root + "/net/tcp", Root + "/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 {
				continue
			}
			l, err1 := ParseNetAddr(fs[1])
			rm, err2 := ParseNetAddr(fs[2])
			if err1 != nil || err2 != nil {
				continue
			}
			if sameEnd(l, local) && sameEnd(rm, remote) && fs[9] != "0" {
				return fs[9], nil
			}
		}
	}
	return "", fmt.Errorf("connection from %s not found in /proc/net/tcp (not a local process)", local)
}

func sameEnd(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// ParseNetAddr decodes "0100007F:1F90" (IPv4) or the 32-hex-digit IPv6 form
// of /proc/net/tcp: each 32-bit word in host (little-endian) byte order.
func ParseNetAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw := make([]byte, len(h)/2)
	for i := range raw {
		b, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return netip.AddrPort{}, err
		}
		raw[i] = byte(b)
	}
	for w := 0; w < len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a, uint16(port)), nil
}
