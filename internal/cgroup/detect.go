package cgroup

import (
	"bufio"
	"io"
	"path"
	"slices"
	"strings"
)

// mount is one cgroup filesystem mount from /proc/self/mountinfo.
type mount struct {
	Root        string   // root of the hierarchy visible at the mount point
	Point       string   // mount point
	V2          bool     // cgroup2
	Controllers []string // v1: controllers bound to the hierarchy (from super options)
}

// parseMountinfo returns the cgroup and cgroup2 mounts in a mountinfo file.
func parseMountinfo(r io.Reader) []mount {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			out = append(out, mount{Root: unescape(f[3]), Point: unescape(f[4]), V2: true})
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(g[2], ",") {
				switch {
				case o == "rw" || o == "ro" || strings.HasPrefix(o, "name=") || strings.Contains(o, "="):
				case o == "noprefix" || o == "clone_children" || o == "xattr" || o == "cpuset_v2_mode":
				default:
					ctrls = append(ctrls, o)
				}
			}
			out = append(out, mount{Root: unescape(f[3]), Point: unescape(f[4]), Controllers: ctrls})
		}
	}
	return out
}

// unescape undoes the octal escapes mountinfo uses for spaces and the like.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			o := s[i+1 : i+4]
			if o[0] >= '0' && o[0] <= '3' && o[1] >= '0' && o[1] <= '7' && o[2] >= '0' && o[2] <= '7' {
				b.WriteByte((o[0]-'0')<<6 | (o[1]-'0')<<3 | (o[2] - '0'))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseProcCgroup parses /proc/<pid>/cgroup into controller → path. The unified
// (v2) hierarchy is returned under the key "".
func parseProcCgroup(r io.Reader) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// hostPath returns the directory on disk for cgroup path p in a hierarchy mounted
// at m (which may expose only a subtree, m.Root).
func hostPath(m mount, p string) string {
	rel := p
	if m.Root != "/" && m.Root != "" {
		if r, ok := strings.CutPrefix(p, m.Root); ok {
			rel = r
		} else {
			rel = "/"
		}
	}
	return path.Join(m.Point, rel)
}

// layout is what detection decided: either a v2 directory, or v1 controller directories.
type layout struct {
	Version int               // 0 (none usable), 1 or 2
	V2Dir   string            // v2: the daemon's own cgroup directory
	V1Dirs  map[string]string // v1: controller → the daemon's own cgroup directory in that hierarchy
	Reason  string            // why nothing is usable, when Version is 0
}

// v1Wanted are the v1 controllers haven uses; cpu and memory are required.
var v1Wanted = []string{"cpu", "cpuacct", "memory", "freezer", "pids"}

// detect picks the cgroup layout. v2 wins when its root lists both cpu and memory
// in cgroup.controllers (read through controllersOf); otherwise v1 is used when cpu
// and memory hierarchies are mounted.
func detect(mounts []mount, self map[string]string, controllersOf func(dir string) []string) layout {
	var reasons []string
	for _, m := range mounts {
		if !m.V2 {
			continue
		}
		dir := hostPath(m, self[""])
		ctrls := controllersOf(dir)
		if slices.Contains(ctrls, "cpu") && slices.Contains(ctrls, "memory") {
			return layout{Version: 2, V2Dir: dir}
		}
		reasons = append(reasons, "cgroup2 at "+m.Point+" lacks cpu or memory controllers (has "+strings.Join(ctrls, " ")+")")
	}
	dirs := map[string]string{}
	for _, m := range mounts {
		if m.V2 {
			continue
		}
		for _, c := range m.Controllers {
			if slices.Contains(v1Wanted, c) {
				if _, dup := dirs[c]; !dup {
					dirs[c] = hostPath(m, self[c])
				}
			}
		}
	}
	if dirs["cpu"] != "" && dirs["memory"] != "" {
		return layout{Version: 1, V1Dirs: dirs}
	}
	reasons = append(reasons, "no cgroup v1 cpu and memory hierarchies mounted")
	return layout{Reason: strings.Join(reasons, "; ")}
}
